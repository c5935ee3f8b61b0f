"""Modern decoder variants: RMSNorm, gated feed-forward, grouped-query
attention with its KV cache, untied outputs, the Llama import (parity with
`transformers` at 1e-4) and the small Llama config."""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import flax.linen as nn
from flax import traverse_util

import conftest
from configs import llama_small
from models import hf as huggingface, registry
from models.config import ModelConfig, model_config_from
from models.decoder_lm import DecoderLM, init_cache
from models.feed_forward import FeedForward
from models.normalization import layer_norm
from tasks import get_task
from training import flops

os.environ.setdefault('HF_HUB_OFFLINE', '1')
VOCAB = 40


def tiny_config(**overrides) -> ModelConfig:
  """A 2-layer Llama block: RMSNorm, SwiGLU, 2 kv heads for 4, rotary."""
  fields = dict(llama_small.llama_model(num_layers=2, d_model=32, num_heads=4,
                                        num_kv_heads=2, d_ff=48),
                vocab_size=VOCAB, max_len=24)
  fields.update(overrides)
  return ModelConfig(**fields)


def random_params(cfg, seed=0):
  """N(0, 0.2) parameters (norm scales near 1), shaped by eval_shape."""
  rs = np.random.RandomState(seed)
  return jax.tree_util.tree_map_with_path(
      lambda path, s: jnp.asarray(
          (path[-1].key == 'scale') + 0.2 * rs.standard_normal(s.shape),
          s.dtype),
      registry.param_shapes('decoder_lm', cfg))


@functools.lru_cache(maxsize=None)
def _jitted_apply(cfg, decode=False):
  model = DecoderLM(cfg, decode=decode)
  return jax.jit(functools.partial(model.apply,
                                   mutable=['cache'] if decode else False))


def tokens(seed=0, batch=2, length=10):
  return np.random.RandomState(seed).randint(0, VOCAB, (batch, length))


def flat_shapes(tree):
  return {'/'.join(k): tuple(v.shape)
          for k, v in traverse_util.flatten_dict(tree).items()}


# ------------------------------------------------------------ validation


@pytest.mark.parametrize('fields, message', [
    (dict(num_heads=4, num_kv_heads=3),
     r'model.num_heads=4 is not divisible by model.num_kv_heads=3'),
    (dict(num_kv_heads=-1), r'model.num_kv_heads must be >= 0'),
    (dict(norm_kind='batch'), r"model.norm_kind='batch' is not one of"),
    (dict(ffn_kind='swiglu'), r"model.ffn_kind='swiglu' is not one of"),
])
def test_invalid_fields_fail_naming_them(fields, message):
  with pytest.raises(ValueError, match=message):
    tiny_config(**fields)


def test_unset_kv_heads_mean_one_per_query_head():
  assert tiny_config(num_kv_heads=0).kv_heads == 4
  assert tiny_config(num_kv_heads=1).kv_heads == 1


# ------------------------------------------------------------ layers


def test_rms_norm_has_a_scale_only_and_divides_by_the_root_mean_square():
  cfg = tiny_config(layer_norm_epsilon=1e-6)
  x = np.random.RandomState(0).standard_normal((2, 3, 32)).astype(np.float32)
  norm = layer_norm(cfg, 'norm')
  variables = nn.meta.unbox(norm.init(jax.random.key(0), x))
  assert flat_shapes(variables['params']) == {'scale': (32,)}
  scale = np.linspace(0.5, 1.5, 32).astype(np.float32)
  out = norm.apply({'params': {'scale': scale}}, x)
  expected = x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6) * scale
  np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize('activation, act', [
    ('silu', lambda h: h / (1 + np.exp(-h))),                         # SwiGLU
    ('gelu_tanh', lambda h: 0.5 * h * (1 + np.tanh(
        np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))),              # GeGLU
])
def test_gated_feed_forward_is_down_of_act_gate_times_up(activation, act):
  cfg = tiny_config(activation=activation)
  x = np.random.RandomState(1).standard_normal((2, 3, 32)).astype(np.float32)
  ffn = FeedForward(cfg)
  shapes = jax.eval_shape(ffn.init, jax.random.key(0), x)['params']
  assert flat_shapes(shapes) == {'w1/kernel': (32, 48), 'w3/kernel': (32, 48),
                                 'w2/kernel': (48, 32)}  # use_bias=False
  rs = np.random.RandomState(2)
  params = {k: {'kernel': rs.standard_normal(v['kernel'].shape).astype(
      np.float32) * 0.3} for k, v in shapes.items()}
  w1, w3, w2 = (params[k]['kernel'] for k in ('w1', 'w3', 'w2'))
  expected = (act(x @ w1) * (x @ w3)) @ w2
  np.testing.assert_allclose(ffn.apply({'params': params}, x), expected,
                             atol=1e-4)


def test_kv_projections_and_cache_have_the_kv_heads():
  cfg = tiny_config(num_kv_heads=2)
  shapes = flat_shapes(registry.param_shapes('decoder_lm', cfg))
  attention = 'stack/layers_0/attention/'
  assert shapes[attention + 'query/kernel'] == (32, 4, 8)
  assert shapes[attention + 'key/kernel'] == (32, 2, 8)
  assert shapes[attention + 'value/kernel'] == (32, 2, 8)
  assert 'output_projection/kernel' in shapes  # untied
  cache = flat_shapes(init_cache(cfg, 3, 16))
  assert cache['stack/layers_0/attention/cached_key'] == (3, 16, 2, 8)
  assert cache['stack/layers_0/attention/cached_value'] == (3, 16, 2, 8)


@pytest.mark.parametrize('kv_heads', [1, 2])
def test_grouped_query_attention_equals_heads_with_repeated_kv_weights(
    kv_heads):
  """Kv head j serves query heads j*g .. j*g + g - 1 (HF repeat_kv): a GQA
  model equals the full multi-head model whose k/v kernels repeat its own."""
  gqa = tiny_config(num_kv_heads=kv_heads)
  mha = gqa.replace(num_kv_heads=0)
  params = random_params(gqa)
  repeat = lambda k: jnp.repeat(k, 4 // kv_heads, axis=1)  # [d, kv, hd]
  mha_params = jax.tree_util.tree_map_with_path(
      lambda path, x: repeat(x) if path[-2].key in ('key', 'value') else x,
      params)
  ids = tokens()
  np.testing.assert_allclose(
      _jitted_apply(gqa)({'params': params}, ids),
      _jitted_apply(mha)({'params': mha_params}, ids), atol=1e-5)


def run_cached(cfg, params, ids, chunks):
  """Feeds `ids` through the KV cache in pieces of the given lengths."""
  cache = init_cache(cfg, ids.shape[0], ids.shape[1])
  outputs, start = [], 0
  for length in chunks:
    logits, updates = _jitted_apply(cfg, decode=True)(
        {'params': params, 'cache': cache}, ids[:, start:start + length])
    cache = updates['cache']
    outputs.append(logits)
    start += length
  return np.concatenate(outputs, axis=1)


@pytest.mark.parametrize('overrides', [
    dict(num_kv_heads=2), dict(num_kv_heads=1),
    dict(num_kv_heads=2, scan_layers=True),
    dict(num_kv_heads=2, activation='gelu', tie_output_embedding=True)])
def test_gqa_cached_decoding_equals_full_decoding(overrides):
  cfg = tiny_config(**overrides)
  params = random_params(cfg)
  ids = tokens(length=10)
  full = _jitted_apply(cfg)({'params': params}, ids)
  np.testing.assert_allclose(run_cached(cfg, params, ids, [1] * 10), full,
                             atol=1e-4)
  np.testing.assert_allclose(run_cached(cfg, params, ids, [6, 1, 1, 1, 1]),
                             full, atol=1e-4)


def test_fused_attention_takes_grouped_kv_heads_as_einsum_does():
  cfg = tiny_config(num_kv_heads=2)
  params = random_params(cfg)
  ids = tokens()
  np.testing.assert_allclose(
      _jitted_apply(cfg.replace(attention_impl='fused'))({'params': params},
                                                         ids),
      _jitted_apply(cfg)({'params': params}, ids), atol=1e-4)


def test_model_flops_count_the_gqa_and_gated_weights():
  """6·N: N is every parameter but the token look-up table and the norm
  scales (untied output, no biases)."""
  cfg = tiny_config(num_kv_heads=1)
  shapes = registry.param_shapes('decoder_lm', cfg)
  n = registry.count_params(shapes) - VOCAB * 32 - (2 * 2 + 1) * 32
  seq = 16
  per_token = flops.closed_form_per_token(cfg, seq)
  assert per_token == 6 * n + 12 * cfg.num_layers * 32 * seq
  assert per_token == flops.train_flops_per_token(
      cfg, 'decoder_lm', flops.StepShape(seq_len=seq))


# ------------------------------------------------------------ config


def test_llama_small_config_builds_the_llama_decoder():
  config = llama_small.get_config()
  task = get_task(config)
  cfg = task.model_config
  assert task.model_name == 'decoder_lm' and config.data.source == 'synthetic'
  assert (cfg.norm_kind, cfg.ffn_kind, cfg.activation, cfg.kv_heads,
          cfg.position_embedding, cfg.use_bias,
          cfg.tie_output_embedding) == ('rms', 'gated', 'silu', 2, 'rope',
                                        False, False)
  shapes = flat_shapes(jax.eval_shape(task.init_variables,
                                      jax.random.key(0))['params'])
  assert shapes['stack/layers_0/attention/key/kernel'] == (64, 2, 16)
  assert shapes['stack/layers_1/ffn/w3/kernel'] == (64, 176)
  assert not any(k.endswith('bias') for k in shapes)
  assert model_config_from(config.model) == cfg


# ------------------------------------------------------------ HF Llama

torch = conftest.optional_module('torch')
transformers = conftest.optional_module('transformers')
needs_torch = conftest.requires(torch=torch, transformers=transformers)


def llama_reference(tmp_path, **overrides):
  """A random small LlamaForCausalLM (norm weights perturbed too), saved."""
  torch.manual_seed(0)
  config = transformers.LlamaConfig(**{**dict(
      vocab_size=100, hidden_size=64, num_hidden_layers=2,
      num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
      max_position_embeddings=32, rms_norm_eps=1e-6, pad_token_id=0,
      bos_token_id=1, eos_token_id=2, rope_theta=500.0,
      attn_implementation='eager'), **overrides})
  model = transformers.LlamaForCausalLM(config)
  gen = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn(p.shape, generator=gen))
  model.eval()
  path = str(tmp_path / 'llama')
  model.save_pretrained(path)
  return model, path


def padded_batch():
  """Right-padded rows: their valid positions must not see the padding."""
  rs = np.random.RandomState(0)
  ids = rs.randint(3, 100, (3, 12))
  mask = np.ones_like(ids)
  mask[1, 7:] = 0
  mask[2, 4:] = 0
  return np.where(mask == 1, ids, 0), mask


@needs_torch
@pytest.mark.parametrize('overrides', [
    {}, dict(num_key_value_heads=1, tie_word_embeddings=True),
    dict(num_key_value_heads=4, hidden_act='gelu_pytorch_tanh')],
    ids=['gqa', 'mqa_tied', 'mha_geglu'])
def test_llama_matches_transformers(tmp_path, overrides):
  reference, path = llama_reference(tmp_path, **overrides)
  cfg, params, name = huggingface.load_hf_checkpoint(path)
  assert name == 'decoder_lm'
  assert cfg.kv_heads == reference.config.num_key_value_heads
  assert cfg.rope_base == 500.0
  ids, mask = padded_batch()
  with torch.no_grad():
    ref = reference(input_ids=torch.tensor(ids),
                    attention_mask=torch.tensor(mask),
                    output_hidden_states=True)
  model = registry.build(name, cfg)
  # Segment 0 for padding keeps the padded positions to themselves.
  logits = jax.jit(model.apply)({'params': params}, ids,
                                inputs_segmentation=mask)
  hidden = jax.jit(functools.partial(model.apply, return_hidden=True))(
      {'params': params}, ids, inputs_segmentation=mask)
  valid = mask == 1
  for ours, theirs in ((logits, ref.logits), (hidden, ref.hidden_states[-1])):
    theirs = theirs.numpy()
    assert np.asarray(ours).shape == theirs.shape
    np.testing.assert_allclose(np.asarray(ours)[valid], theirs[valid],
                               atol=1e-4, rtol=0)


def test_llama_with_scaled_rope_is_rejected(tmp_path):
  hf = dict(model_type='llama', architectures=['LlamaForCausalLM'],
            vocab_size=10, hidden_size=8, num_attention_heads=2,
            intermediate_size=16, num_hidden_layers=1,
            rope_parameters=dict(rope_type='linear', factor=2.0,
                                 rope_theta=1e4))
  with pytest.raises(ValueError, match="rope_type='linear'"):
    huggingface.model_config_from_hf(hf)
