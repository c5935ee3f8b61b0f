"""Decoder-only LM: GPT-2 sizes, causality, the KV cache and generation."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import gpt2_medium, gpt2_small
from decoding import generation
from models import hf as huggingface, registry
from models.config import ModelConfig, model_config_from
from models.decoder_lm import DecoderLM, init_cache
from tasks import get_task

VOCAB = 40


def tiny_config(**overrides) -> ModelConfig:
  fields = dict(gpt2_small.gpt2_model(num_layers=2, d_model=32),
                vocab_size=VOCAB, num_heads=4, max_len=24, dropout_rate=0.0,
                attention_dropout_rate=0.0)
  fields.update(overrides)
  return ModelConfig(**fields)


def random_params(cfg, seed=0):
  """N(0, 0.2) parameters (LayerNorm scales near 1), shaped by eval_shape:
  compiling `init` would cost seconds per model on CPU."""
  rs = np.random.RandomState(seed)
  return jax.tree_util.tree_map_with_path(
      lambda path, s: jnp.asarray(
          (path[-1].key == 'scale') + 0.2 * rs.standard_normal(s.shape),
          s.dtype),
      registry.param_shapes('decoder_lm', cfg))


@functools.lru_cache(maxsize=None)
def _jitted_apply(cfg, decode=False, **kwargs):
  model = DecoderLM(cfg, decode=decode)
  mutable = ['cache'] if decode else False
  return jax.jit(functools.partial(model.apply, mutable=mutable, **kwargs))


def logits_of(cfg, params, ids, return_hidden=False, **kwargs):
  return _jitted_apply(cfg, return_hidden=return_hidden)(
      {'params': params}, ids, **kwargs)


def tokens(seed=0, batch=2, length=12):
  return np.random.RandomState(seed).randint(0, VOCAB, (batch, length))


@pytest.mark.parametrize('config_module, expected', [
    (gpt2_small, 124_439_808), (gpt2_medium, 354_823_168)])
def test_gpt2_sizes_have_the_published_parameter_counts(config_module,
                                                        expected):
  config = config_module.get_config()
  shapes = registry.param_shapes(get_task(config).model_name,
                                 model_config_from(config.model))
  assert registry.count_params(shapes) == expected


def test_future_tokens_do_not_change_past_logits():
  cfg = tiny_config()
  params = random_params(cfg)
  ids = tokens()
  changed = ids.copy()
  changed[:, 7:] = (changed[:, 7:] + 5) % VOCAB
  a = logits_of(cfg, params, ids)
  b = logits_of(cfg, params, changed)
  np.testing.assert_allclose(a[:, :7], b[:, :7], atol=1e-5)
  assert np.abs(a[:, 7:] - b[:, 7:]).max() > 1e-3


def test_output_is_tied_to_the_token_embedding():
  cfg = tiny_config()
  shapes = registry.param_shapes('decoder_lm', cfg)
  assert set(shapes) == {'token_embedding', 'embed', 'stack', 'final_norm'}
  params = random_params(cfg)
  ids = tokens()
  hidden = logits_of(cfg, params, ids, return_hidden=True)
  table = params['token_embedding']['embedding']
  np.testing.assert_allclose(logits_of(cfg, params, ids),
                             np.asarray(hidden) @ np.asarray(table).T,
                             atol=1e-4)


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
    {}, {'position_embedding': 'rope'}, {'scan_layers': True}])
def test_cached_incremental_logits_equal_full_sequence_logits(overrides):
  cfg = tiny_config(**overrides)
  params = random_params(cfg)
  ids = tokens(length=10)
  full = logits_of(cfg, params, ids)
  one_by_one = run_cached(cfg, params, ids, [1] * 10)
  np.testing.assert_allclose(one_by_one, full, atol=1e-4)
  prefill_then_steps = run_cached(cfg, params, ids, [6, 1, 1, 1, 1])
  np.testing.assert_allclose(prefill_then_steps, full, atol=1e-4)


def test_rotary_model_has_no_position_table():
  shapes = registry.param_shapes('decoder_lm',
                                 tiny_config(position_embedding='rope'))
  assert 'embed' not in shapes  # no learned table: positions act in attention
  assert set(shapes) == {'token_embedding', 'stack', 'final_norm'}


def test_packed_segments_equal_separate_sequences():
  cfg = tiny_config()
  params = random_params(cfg)
  a, b = tokens(1, 1, 5), tokens(2, 1, 7)
  packed = np.concatenate([a, b], axis=1)
  segmentation = np.array([[1] * 5 + [2] * 7])
  positions = np.array([list(range(5)) + list(range(7))])
  out = logits_of(cfg, params, packed, inputs_positions=positions,
                  inputs_segmentation=segmentation)
  np.testing.assert_allclose(out[:, :5], logits_of(cfg, params, a), atol=1e-5)
  np.testing.assert_allclose(out[:, 5:], logits_of(cfg, params, b), atol=1e-5)


def test_scanned_parameters_are_the_stacked_unrolled_ones():
  cfg = tiny_config()
  params = random_params(cfg)
  ids = tokens()
  scanned = logits_of(cfg.replace(scan_layers=True),
                      huggingface.stack_layers(params), ids)
  np.testing.assert_allclose(scanned, logits_of(cfg, params, ids), atol=1e-5)


def greedy_reference(cfg, params, prompt, bos, steps, stop):
  """Full-sequence argmax decoding, one row at a time, no cache."""
  seq = [bos] + list(prompt)
  while len(seq) - 1 < steps:
    nxt = int(np.argmax(logits_of(cfg, params, np.array([seq]))[0, -1]))
    seq.append(nxt)
    if nxt == stop:
      break
  return seq[1:]


def test_greedy_generation_matches_full_recomputation():
  cfg = tiny_config()
  params = random_params(cfg, seed=3)
  prompts = [[5, 6, 7, 8], [9], [10, 11]]
  bos, max_len = 1, 10
  # A stop id that the reference actually emits for one row.
  ref0 = greedy_reference(cfg, params, prompts[0], bos, max_len, stop=-1)
  stop = ref0[len(prompts[0]) + 2]
  out = generation.generate(cfg, params, prompts, jax.random.key(0),
                            max_decode_len=max_len, temperature=0.0,
                            stop_ids=(stop,), bos_id=bos, pad_id=0)
  for row, prompt in enumerate(prompts):
    ref = greedy_reference(cfg, params, prompt, bos, max_len, stop)
    length = int(out['lengths'][row])
    assert list(np.asarray(out['tokens'][row, :length])) == ref
    assert (np.asarray(out['tokens'][row, length:]) == 0).all()


def test_sampling_respects_top_k_and_is_reproducible():
  cfg = tiny_config()
  params = random_params(cfg, seed=4)
  prompts = np.array([[3, 4, 0], [5, 0, 0]])
  sample = functools.partial(generation.generate, cfg, params, prompts,
                             max_decode_len=8, temperature=1.0, top_k=1,
                             bos_id=1)
  greedy = generation.generate(cfg, params, prompts, jax.random.key(0),
                               max_decode_len=8, temperature=0.0, bos_id=1)
  # top_k=1 is greedy whatever the seed.
  np.testing.assert_array_equal(sample(jax.random.key(7))['tokens'],
                                greedy['tokens'])
  free = functools.partial(generation.generate, cfg, params, prompts,
                           max_decode_len=8, temperature=2.0, bos_id=1)
  a, b = free(jax.random.key(1)), free(jax.random.key(1))
  np.testing.assert_array_equal(a['tokens'], b['tokens'])
  np.testing.assert_array_equal(a['tokens'][:, :1], [[3], [5]])
  np.testing.assert_array_equal(a['tokens'][0, 1], 4)


def test_generation_longer_than_learned_positions_fails_clearly():
  cfg = tiny_config()
  with pytest.raises(ValueError, match='max_len=24'):
    init_cache(cfg, 1, 30)


def test_gpt2_initialisation_scales_residual_outputs_by_depth():
  # GPT-2: N(0, 0.02) kernels, but each residual branch's last projection
  # (attention 'out', feed-forward 'wo') at 0.02 / sqrt(2 * n_layer).
  layers = 8
  cfg = tiny_config(num_layers=layers, d_model=64, d_ff=256)
  params = nn.meta.unbox(jax.jit(DecoderLM(cfg).init)(
      jax.random.key(0), jnp.ones((1, 8), jnp.int32)))['params']
  stds = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    name = jax.tree_util.keystr(path)
    if name.endswith("['kernel']"):
      kind = ('residual' if "['out']" in name or "['wo']" in name
              else 'other')
      stds.setdefault(kind, []).append(np.asarray(leaf).ravel())
  residual = np.concatenate(stds['residual']).std()
  other = np.concatenate(stds['other']).std()
  np.testing.assert_allclose(other, 0.02, rtol=0.05)
  np.testing.assert_allclose(residual, 0.02 / np.sqrt(2 * layers), rtol=0.05)
  unscaled = cfg.replace(scale_residual_init=False)
  params = nn.meta.unbox(jax.jit(DecoderLM(unscaled).init)(
      jax.random.key(0), jnp.ones((1, 8), jnp.int32)))['params']
  wo = params['stack']['layers_0']['ffn']['wo']['kernel']
  np.testing.assert_allclose(np.asarray(wo).std(), 0.02, rtol=0.05)
