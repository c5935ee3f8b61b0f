"""T5 (Raffel et al. 2020): relative position buckets, the Hugging Face
import with logits equal to `transformers` at 1e-4 (v1.0 and v1.1 layouts),
cached greedy decoding and the config checks. Tiny models: d_model 32,
2 + 2 layers, 8 buckets up to distance 20 (so that short rows reach the
logarithmic buckets)."""
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import conftest
from configs import t5_small
from decoding import beam_search
from models import hf as huggingface, registry
from models.hf import t5 as hf_t5
from models.config import ModelConfig
from models.relative_position import relative_position_bucket
from training import pretrained

torch = conftest.optional_module('torch')
transformers = conftest.optional_module('transformers')
needs_torch = conftest.requires(torch=torch, transformers=transformers)

os.environ.setdefault('HF_HUB_OFFLINE', '1')
VOCAB = 40


def hf_config(version: str) -> 'transformers.T5Config':
  return transformers.T5Config(
      vocab_size=VOCAB, d_model=32, d_kv=8, num_heads=4, d_ff=48,
      num_layers=2, num_decoder_layers=2, relative_attention_num_buckets=8,
      relative_attention_max_distance=20, dropout_rate=0.0,
      feed_forward_proj='gated-gelu' if version == '1.1' else 'relu',
      tie_word_embeddings=version != '1.1', decoder_start_token_id=0)


@functools.lru_cache(maxsize=None)
def hf_model(version: str):
  torch.manual_seed(0 if version == '1.0' else 1)
  model = transformers.T5ForConditionalGeneration(hf_config(version))
  if version == '1.1':  # an lm_head of its own, as the hub's v1.1 files
    model.lm_head.weight = torch.nn.Parameter(torch.randn(VOCAB, 32) * 0.5)
  return model.eval()


@pytest.fixture(scope='module', params=['1.0', '1.1'])
def checkpoint(request, tmp_path_factory):
  """(version, HF model, directory written by save_pretrained)."""
  model = hf_model(request.param)
  path = str(tmp_path_factory.mktemp(f't5_v{request.param}'))
  model.save_pretrained(path)
  return request.param, model, path


def source_and_decoder_ids():
  rs = np.random.RandomState(0)
  inputs = rs.randint(2, VOCAB, (2, 30))
  inputs[1, 21:] = 0  # padding
  decoder_ids = rs.randint(2, VOCAB, (2, 26))
  decoder_ids[:, 0] = 0  # decoder_start_token_id
  return inputs, decoder_ids


def torch_logits(model, inputs, decoder_ids):
  with torch.no_grad():
    return model(input_ids=torch.tensor(inputs),
                 attention_mask=torch.tensor(inputs != 0),
                 decoder_input_ids=torch.tensor(decoder_ids)).logits.numpy()


@functools.lru_cache(maxsize=None)
def _apply(cfg, method, decode=False):
  model = registry.build('encoder_decoder', cfg, decode=decode)
  return jax.jit(functools.partial(
      model.apply, method=method, mutable=['cache'] if decode else False))


def our_logits(cfg, params, inputs, decoder_ids):
  encoded = _apply(cfg, 'encode')({'params': params}, inputs)
  return _apply(cfg, 'decode_logits')({'params': params}, encoded, inputs,
                                      decoder_ids)


# ------------------------------------------------------------ buckets


@needs_torch
@pytest.mark.parametrize('bidirectional', [True, False])
@pytest.mark.parametrize('num_buckets, max_distance', [(32, 128), (8, 20)])
def test_buckets_equal_transformers(bidirectional, num_buckets, max_distance):
  offsets = np.arange(-400, 401)[None, :] + np.arange(0, 3)[:, None] * 7
  expected = transformers.models.t5.modeling_t5.T5Attention.\
      _relative_position_bucket(torch.tensor(offsets), bidirectional,
                                num_buckets, max_distance).numpy()
  ours = relative_position_bucket(jnp.asarray(offsets), bidirectional,
                                  num_buckets, max_distance)
  np.testing.assert_array_equal(ours, expected)
  assert ours.min() == 0 and ours.max() == num_buckets - 1


# ------------------------------------------------------------ import


@needs_torch
def test_import_maps_the_config(checkpoint):
  version, _, path = checkpoint
  cfg, params, name = huggingface.load_hf_checkpoint(path)
  assert name == 'encoder_decoder'
  assert (cfg.d_model, cfg.num_heads, cfg.d_ff, cfg.num_layers) == (32, 4, 48,
                                                                    2)
  assert cfg.position_embedding == 't5_relative'
  assert not cfg.scale_attention_logits and not cfg.scale_embedding
  assert (cfg.relative_attention_num_buckets,
          cfg.relative_attention_max_distance) == (8, 20)
  v1_1 = version == '1.1'
  assert cfg.ffn_kind == ('gated' if v1_1 else 'dense')
  assert cfg.activation == ('gelu_tanh' if v1_1 else 'relu')
  assert cfg.tie_output_embedding is not v1_1
  assert cfg.scale_decoder_output is not v1_1
  assert params['encoder']['relative_attention_bias'].shape == (8, 4)


@needs_torch
def test_logits_equal_transformers(checkpoint):
  _, model, path = checkpoint
  cfg, params, _ = huggingface.load_hf_checkpoint(path)
  inputs, decoder_ids = source_and_decoder_ids()
  expected = torch_logits(model, inputs, decoder_ids)
  ours = np.asarray(our_logits(cfg, params, inputs, decoder_ids))
  assert np.abs(expected).max() > 1.0  # not vanishingly small logits
  np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)


@needs_torch
def test_transformers_4_layout_gives_the_same_logits(checkpoint, tmp_path):
  """Files as transformers 4 wrote them: every tied copy (embed_tokens,
  lm_head) stored, and `tie_word_embeddings` alone telling v1.0 from v1.1
  (no `scale_decoder_outputs`)."""
  from safetensors.torch import save_file  # pylint: disable=g-import-not-at-top
  version, model, path = checkpoint
  with open(os.path.join(path, 'config.json')) as f:
    hf = json.load(f)
  del hf['scale_decoder_outputs']
  hf['tie_word_embeddings'] = version == '1.0'
  with open(tmp_path / 'config.json', 'w') as f:
    json.dump(hf, f)
  save_file({k: v.detach().clone().contiguous()
             for k, v in model.state_dict().items()},
            str(tmp_path / 'model.safetensors'))
  cfg, params, _ = huggingface.load_hf_checkpoint(str(tmp_path))
  assert cfg.scale_decoder_output is (version == '1.0')
  inputs, decoder_ids = source_and_decoder_ids()
  np.testing.assert_allclose(our_logits(cfg, params, inputs, decoder_ids),
                             torch_logits(model, inputs, decoder_ids),
                             atol=1e-4, rtol=0)


@needs_torch
@pytest.mark.parametrize('overrides', [dict(scan_layers=True),
                                       dict(attention_impl='fused')])
def test_scanned_or_fused_models_give_the_same_logits(checkpoint, overrides):
  version, model, path = checkpoint
  if version == '1.1':
    pytest.skip('one layout is enough')
  cfg, params, _ = huggingface.load_hf_checkpoint(path, **overrides)
  inputs, decoder_ids = source_and_decoder_ids()
  np.testing.assert_allclose(our_logits(cfg, params, inputs, decoder_ids),
                             torch_logits(model, inputs, decoder_ids),
                             atol=1e-4, rtol=0)


@needs_torch
def test_init_from_copies_every_parameter(checkpoint):
  _, _, path = checkpoint
  cfg, imported, _ = huggingface.load_hf_checkpoint(path)
  fresh = registry.init_params('encoder_decoder', cfg, jax.random.key(0))
  pretrained.check_init_from(path)
  restored = pretrained.restore_pretrained(fresh, path)
  jax.tree.map(np.testing.assert_array_equal, restored, imported)


# ------------------------------------------------------------ decoding


@needs_torch
def test_cached_greedy_decoding_equals_full_recomputation(checkpoint):
  version, _, path = checkpoint
  if version == '1.1':
    pytest.skip('the cache does not depend on the feed-forward kind')
  cfg, params, _ = huggingface.load_hf_checkpoint(path)
  inputs, _ = source_and_decoder_ids()
  steps = 24  # past max_distance=20: the far buckets are used too
  model = registry.build('encoder_decoder', cfg, decode=True)
  encoded = _apply(cfg, 'encode')({'params': params}, inputs)
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), inputs, jnp.zeros((2, steps), jnp.int32)))
  cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes['cache'])
  step = _apply(cfg, 'decode_logits', decode=True)
  ids = np.zeros((2, steps + 1), np.int32)  # 0: the first decoder input
  cached = []
  for t in range(steps):
    logits, variables = step({'params': params, 'cache': cache}, encoded,
                             inputs, ids[:, t:t + 1])
    cache = variables['cache']
    cached.append(np.asarray(logits[:, 0]))
    ids[:, t + 1] = cached[-1].argmax(-1)
  cached = np.stack(cached, 1)
  full = np.asarray(our_logits(cfg, params, inputs, ids[:, :steps]))
  np.testing.assert_allclose(cached, full, atol=1e-5, rtol=0)
  np.testing.assert_array_equal(full.argmax(-1), ids[:, 1:])

  # The same cache through decoding/beam_search (one beam, an EOS id the
  # model cannot emit): the greedy ids again.
  def tokens_to_logits(last, cache):
    logits, variables = step({'params': params, 'cache': cache}, encoded,
                             inputs, last)
    return logits[:, -1], variables['cache']
  empty = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes['cache'])
  sequences, _ = beam_search.beam_search(
      tokens_to_logits, empty, batch_size=2, beam_size=1,
      max_decode_len=steps, eos_id=VOCAB, alpha=0.0)
  np.testing.assert_array_equal(sequences[:, 0], ids[:, 1:])


# ------------------------------------------------------------ checks


@pytest.mark.parametrize('fields, message', [
    (dict(relative_attention_num_buckets=-1),
     'model.relative_attention_num_buckets must be >= 4, got -1'),
    (dict(relative_attention_max_distance=8),
     'model.relative_attention_max_distance must exceed half of '
     'model.relative_attention_num_buckets=32, got 8'),
    (dict(attention_impl='blockwise'),
     'model.attention_impl="blockwise" adds no attention bias'),
])
def test_bad_values_fail_in_one_line_naming_the_field(fields, message):
  with pytest.raises(ValueError) as error:
    ModelConfig(**{**t5_small.t5_model(2, 32, 4, 48), **fields})
  assert message in str(error.value) and '\n' not in str(error.value)


def test_unscaled_logits_fold_one_over_sqrt_d_into_the_query_init():
  cfg = ModelConfig(**t5_small.t5_model(2, 64, 4, 48, vocab_size=VOCAB))
  params = registry.init_params('encoder_decoder', cfg, jax.random.key(0))
  attention = params['encoder']['stack']['layers_0']['attention']
  ratio = attention['query']['kernel'].std() / attention['key']['kernel'].std()
  assert abs(ratio - cfg.head_dim ** -0.5) < 0.03  # 16 features a head


def test_relative_positions_need_the_encoder_decoder():
  cfg = ModelConfig(**t5_small.t5_model(1, 32, 4, 48, vocab_size=VOCAB))
  with pytest.raises(ValueError, match='t5_relative.*encoder-decoder only'):
    registry.init_params('decoder_lm', cfg, jax.random.key(0))


def test_unsupported_t5_configs_fail_naming_the_field():
  with pytest.raises(ValueError, match='T5 d_kv=16 is not d_model/num_heads'):
    hf_t5.t5_model_config(dict(d_model=32, num_heads=4, d_kv=16),
                                 untied_head=False)
  with pytest.raises(ValueError, match='T5 decoder_start_token_id=2'):
    hf_t5.t5_model_config(
        dict(d_model=32, num_heads=4, d_kv=8, decoder_start_token_id=2),
        untied_head=False)
