"""BERT: released sizes, heads, masks and layer layouts (tiny configs)."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import bert_finetune, bert_sizes
from configs.base_config import model_config
from models import bert, hf as huggingface, registry
from models.config import ModelConfig, model_config_from


def tiny_config(**overrides) -> ModelConfig:
  fields = dict(bert_sizes.bert_model('tiny'), vocab_size=50, d_model=32,
                num_heads=4, d_ff=64, max_len=16, num_labels=3,
                dropout_rate=0.0, attention_dropout_rate=0.0)
  fields.update(overrides)
  return ModelConfig(**fields)


def random_params(model_name, cfg, seed=0):
  """N(0, 0.1) parameters (LayerNorm scales near 1), shaped by eval_shape:
  compiling `init` would cost seconds per model on CPU."""
  rs = np.random.RandomState(seed)
  return jax.tree_util.tree_map_with_path(
      lambda path, s: jnp.asarray(
          (path[-1].key == 'scale') + 0.1 * rs.standard_normal(s.shape),
          s.dtype),
      registry.param_shapes(model_name, cfg))


@functools.lru_cache(maxsize=None)
def _jitted_apply(model_name, cfg, deterministic):
  return jax.jit(registry.build(model_name, cfg,
                                deterministic=deterministic).apply)


def apply(model_name, cfg, params, *args, deterministic=True, **kwargs):
  return _jitted_apply(model_name, cfg, deterministic)(
      {'params': params}, *args, **kwargs)


def batch(seed=0, batch_size=3, length=10, vocab=50):
  rs = np.random.RandomState(seed)
  ids = rs.randint(1, vocab, (batch_size, length))
  mask = np.ones_like(ids)
  mask[1, 6:] = 0
  mask[2, 3:] = 0
  types = np.zeros_like(ids)
  types[:, 5:] = 1
  return ids, types, mask


@pytest.mark.parametrize('size, expected', [('base', 109_482_240),
                                            ('large', 335_141_888)])
def test_released_sizes_have_the_published_parameter_counts(size, expected):
  cfg = model_config_from(model_config(**bert_sizes.bert_model(size)))
  shapes = registry.param_shapes('bert', cfg)
  assert registry.count_params(shapes) == expected


def test_every_released_size_builds():
  for size, (layers, width, _) in bert_sizes.SIZES.items():
    cfg = model_config_from(model_config(**bert_sizes.bert_model(size)))
    shapes = registry.param_shapes('bert_pretraining', cfg)
    assert len([k for k in shapes['bert']['stack'] if k.startswith('layers_')]
               ) == layers
    assert shapes['bert']['pooler']['kernel'].shape == (width, width)
    assert shapes['mlm_head']['bias'].shape == (30522,)


def test_configs_reject_unknown_size_and_option():
  with pytest.raises(ValueError, match='huge'):
    bert_sizes.bert_model('huge')
  with pytest.raises(ValueError, match='colour'):
    bert_finetune.get_config('colour=red')


def test_heads_have_the_documented_shapes():
  cfg = tiny_config()
  ids, types, mask = batch()
  expected = {
      'bert': {'hidden': (3, 10, 32), 'pooled': (3, 32)},
      'bert_pretraining': {'mlm_logits': (3, 10, 50), 'nsp_logits': (3, 2)},
      'bert_mlm': (3, 10, 50),
      'bert_classifier': (3, 3),
      'bert_token_classifier': (3, 10, 3),
      'bert_qa': {'start_logits': (3, 10), 'end_logits': (3, 10)},
  }
  for name, shapes in expected.items():
    out, _ = jax.eval_shape(lambda: registry.build(name, cfg).init_with_output(
        jax.random.key(0), ids, types, mask))
    assert jax.tree.map(lambda x: x.shape, out) == shapes, name


def test_regression_head_has_one_output():
  cfg = tiny_config(num_labels=1)
  ids, types, mask = batch()
  params = random_params('bert_classifier', cfg)
  out = apply('bert_classifier', cfg, params, ids, types, mask)
  assert out.shape == (3, 1)


def test_padded_tokens_do_not_change_real_positions():
  cfg = tiny_config()
  ids, types, mask = batch()
  params = random_params('bert', cfg, 1)
  out = apply('bert', cfg, params, ids, types, mask)
  noisy = np.where(mask == 1, ids, (ids * 7 + 3) % 50)
  out2 = apply('bert', cfg, params, noisy, types, mask)
  valid = mask.astype(bool)
  np.testing.assert_allclose(out['hidden'][valid], out2['hidden'][valid],
                             atol=1e-6)
  np.testing.assert_allclose(out['pooled'], out2['pooled'], atol=1e-6)
  # ... while without the mask they do.
  out3 = apply('bert', cfg, params, noisy, types)
  assert np.abs(out3['hidden'][0] - out['hidden'][0]).max() == 0
  assert np.abs(out3['hidden'][1, :6] - out['hidden'][1, :6]).max() > 1e-3


def test_token_types_default_to_segment_a():
  cfg = tiny_config()
  ids, _, mask = batch()
  params = random_params('bert', cfg)
  a = apply('bert', cfg, params, ids, None, mask)['hidden']
  b = apply('bert', cfg, params, ids, np.zeros_like(ids), mask)['hidden']
  c = apply('bert', cfg, params, ids, np.ones_like(ids), mask)['hidden']
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 1e-3


def test_masked_positions_select_the_full_logits():
  cfg = tiny_config()
  ids, types, mask = batch()
  params = random_params('bert_pretraining', cfg)
  full = apply('bert_pretraining', cfg, params, ids, types, mask)
  positions = np.array([[1, 4], [0, 5], [2, 2]])
  picked = apply('bert_pretraining', cfg, params, ids, types, mask,
                 masked_positions=positions)
  assert picked['mlm_logits'].shape == (3, 2, 50)
  np.testing.assert_allclose(
      picked['mlm_logits'],
      np.take_along_axis(full['mlm_logits'], positions[..., None], 1),
      atol=1e-5)
  np.testing.assert_allclose(picked['nsp_logits'], full['nsp_logits'],
                             atol=1e-6)


def test_mlm_logits_use_the_word_embedding_table_and_output_bias():
  cfg = tiny_config()
  shapes = registry.param_shapes('bert_mlm', cfg)
  assert set(shapes['mlm_head']) == {'transform', 'norm', 'bias'}
  assert 'pooler' not in shapes['bert']
  params = random_params('bert_mlm', cfg)
  params['mlm_head']['bias'] = np.arange(50, dtype=np.float32) / 50
  ids, types, mask = batch()
  logits = apply('bert_mlm', cfg, params, ids, types, mask)
  hidden = np.asarray(jax.jit(bert.Bert(cfg, add_pooler=False).apply)(
      {'params': params['bert']}, ids, types, mask)['hidden'])
  head = jax.tree.map(np.asarray, params['mlm_head'])
  h = hidden @ head['transform']['kernel'] + head['transform']['bias']
  h = h * 0.5 * (1 + np.vectorize(math.erf)(h / math.sqrt(2)))  # exact GELU
  h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) +
                                                1e-12)
  h = h * head['norm']['scale'] + head['norm']['bias']
  table = np.asarray(params['bert']['token_embedding']['embedding'])
  expected = h @ table.T + head['bias']
  np.testing.assert_allclose(logits, expected, atol=1e-4)


@pytest.mark.parametrize('remat', ['none', 'full'])
def test_scanned_layers_match_unrolled_layers(remat):
  cfg = tiny_config()
  ids, types, mask = batch()
  params = random_params('bert_qa', cfg, 2)
  unrolled = apply('bert_qa', cfg, params, ids, types, mask)
  scan_cfg = cfg.replace(scan_layers=True, remat_policy=remat)
  scanned = apply('bert_qa', scan_cfg, huggingface.stack_layers(params), ids,
                  types, mask)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               unrolled, scanned)


def test_dropout_is_active_only_when_training():
  cfg = tiny_config(dropout_rate=0.5)
  ids, types, mask = batch()
  params = random_params('bert_classifier', cfg)
  a = apply('bert_classifier', cfg, params, ids, types, mask)
  b = apply('bert_classifier', cfg, params, ids, types, mask,
            deterministic=False, rngs={'dropout': jax.random.key(1)})
  assert np.abs(a - b).max() > 1e-4
