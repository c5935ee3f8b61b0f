"""Blockwise (online-softmax) attention against the einsum reference:
causal, padding and packed-segment masks, forward and gradients."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import attention
from models.config import ModelConfig
from models.decoder_lm import DecoderLM, init_cache

B, Q, H, D = 2, 10, 4, 8


def qkv(kv_heads=H, k_len=Q, seed=0):
  rs = np.random.RandomState(seed)
  return (jnp.asarray(rs.standard_normal((B, Q, H, D)), jnp.float32),
          jnp.asarray(rs.standard_normal((B, k_len, kv_heads, D)), jnp.float32),
          jnp.asarray(rs.standard_normal((B, k_len, kv_heads, D)), jnp.float32))


def masks():
  """Causal; padding (row 1 has 3 padded tokens: their queries see no key);
  packed segments under causality; and none."""
  valid = np.ones((B, Q), bool)
  valid[1, 7:] = False
  segments = np.array([[1] * 4 + [2] * 6, [1] * 3 + [2] * 3 + [3] * 2 + [0] * 2])
  return {
      'causal': attention.causal_mask(Q),
      'padding': attention.attention_mask(jnp.asarray(valid),
                                          jnp.asarray(valid)),
      'packed': attention.combine_masks(
          attention.causal_mask(Q),
          attention.segment_mask(jnp.asarray(segments),
                                 jnp.asarray(segments))),
      'none': None,
  }


def attend(impl, block_size, query, key, value, mask):
  return attention.dot_product_attention(
      query, key, value, mask, dropout_rate=0.0, dropout_rng=None,
      deterministic=True, impl=impl, dtype=jnp.float32,
      block_size=block_size)


@pytest.mark.parametrize('mask_name', ['causal', 'padding', 'packed', 'none'])
@pytest.mark.parametrize('block_size, kv_heads', [(4, H), (3, 2), (16, 1)])
def test_blockwise_equals_einsum_forward_and_gradients(mask_name, block_size,
                                                       kv_heads):
  """Block 3 leaves a ragged last block of 10 keys; 16 is one block."""
  mask = masks()[mask_name]
  inputs = qkv(kv_heads)
  cotangent = jnp.asarray(np.random.RandomState(1).standard_normal(
      (B, Q, H, D)), jnp.float32)

  def loss(impl, *args):
    return jnp.sum(attend(impl, block_size, *args, mask) * cotangent)

  np.testing.assert_allclose(attend('blockwise', block_size, *inputs, mask),
                             attend('einsum', block_size, *inputs, mask),
                             atol=1e-5)
  grads = jax.grad(functools.partial(loss, 'blockwise'),
                   argnums=(0, 1, 2))(*inputs)
  reference_grads = jax.grad(functools.partial(loss, 'einsum'),
                             argnums=(0, 1, 2))(*inputs)
  for g, r in zip(grads, reference_grads):
    assert np.abs(np.asarray(r)).max() > 1e-3
    np.testing.assert_allclose(g, r, atol=1e-4)


def test_gradients_are_computed_without_score_sized_residuals():
  """The custom backward pass keeps o, m and l, not a [b, h, q, k] array
  per block: no float residual of the forward pass has q * k elements."""
  q, k, v = qkv(k_len=Q)
  mask = masks()['causal']
  f = lambda q, k, v: attend('blockwise', 4, q, k, v, mask).sum()
  _, vjp = jax.vjp(f, q, k, v)
  residuals = [x for x in jax.tree.leaves(vjp)
               if hasattr(x, 'dtype') and jnp.issubdtype(x.dtype, jnp.floating)]
  assert residuals
  assert max(x.size for x in residuals) <= B * H * Q * D


def tiny_lm(impl):
  return ModelConfig(vocab_size=30, d_model=32, num_heads=4, num_kv_heads=2,
                     d_ff=48, num_layers=2, dropout_rate=0.0,
                     norm_position='pre', final_layer_norm=True,
                     position_embedding='rope', max_len=16,
                     attention_impl=impl, attention_block_size=4)


def test_decoder_lm_with_blockwise_attention_equals_einsum_in_loss_and_grads():
  ids = np.random.RandomState(0).randint(1, 30, (2, 12))
  segments = np.array([[1] * 5 + [2] * 7, [1] * 9 + [0] * 3])
  params = DecoderLM(tiny_lm('einsum')).init(jax.random.key(0), ids)['params']

  def loss(impl, params):
    logits = DecoderLM(tiny_lm(impl)).apply(
        {'params': params}, ids, inputs_segmentation=segments)
    return jnp.mean(jax.nn.log_softmax(logits)[..., 0] * (segments > 0))

  value, grads = jax.value_and_grad(functools.partial(loss, 'blockwise'))(
      params)
  ref_value, ref_grads = jax.value_and_grad(functools.partial(loss, 'einsum'))(
      params)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(g, r, atol=1e-5)


def test_blockwise_cached_decoding_equals_full_decoding():
  cfg = tiny_lm('blockwise')
  ids = np.random.RandomState(0).randint(1, 30, (2, 8))
  model = DecoderLM(cfg)
  params = model.init(jax.random.key(0), ids)['params']
  full = model.apply({'params': params}, ids)
  cache = init_cache(cfg, 2, 8)
  steps = []
  for i in range(8):
    logits, updates = DecoderLM(cfg, decode=True).apply(
        {'params': params, 'cache': cache}, ids[:, i:i + 1], mutable=['cache'])
    cache = updates['cache']
    steps.append(logits)
  np.testing.assert_allclose(np.concatenate(steps, 1), full, atol=1e-4)


def test_blockwise_with_attention_dropout_is_rejected():
  with pytest.raises(ValueError, match='attention_impl="blockwise"'):
    tiny_lm('blockwise').replace(attention_dropout_rate=0.1)
