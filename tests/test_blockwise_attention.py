"""Blockwise (online-softmax), fused and cuDNN attention against the einsum
reference: causal, padding and packed-segment masks, forward and gradients.
Blockwise masks come as per-token pieces (TokenMask), so no q x k array is
ever made; cuDNN's tests need a GPU, but for the translation of its masks."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import attention
from models.config import ModelConfig
from models.bert import BertForPreTraining
from models.decoder_lm import DecoderLM, init_cache
from models.token_mask import TokenMask

B, Q, H, D = 2, 10, 4, 8


def qkv(kv_heads=H, k_len=Q, seed=0, length=Q, head_dim=D):
  rs = np.random.RandomState(seed)
  normal = lambda *shape: jnp.asarray(rs.standard_normal(shape), jnp.float32)
  return (normal(B, length, H, head_dim),
          normal(B, k_len, kv_heads, head_dim),
          normal(B, k_len, kv_heads, head_dim))


def masks(length=Q):
  """{name: (TokenMask, the same mask made whole by attention.py's dense
  helpers)}: causal; padding (row 1's last 30% of tokens are padding:
  their queries see no key); packed segments under causality (row 0: 2
  segments, row 1: 3 and padding); and none."""
  cut = lambda fraction: int(length * fraction)
  valid = np.ones((B, length), bool)
  valid[1, cut(0.7):] = False
  segments = np.zeros((B, length), np.int32)
  segments[0, :cut(0.4)], segments[0, cut(0.4):] = 1, 2
  segments[1, :cut(0.3)], segments[1, cut(0.3):cut(0.6)] = 1, 2
  segments[1, cut(0.6):cut(0.8)] = 3
  valid, segments = jnp.asarray(valid), jnp.asarray(segments)
  return {
      'causal': (TokenMask(causal=True), attention.causal_mask(length)),
      'padding': (TokenMask(query_valid=valid, key_valid=valid),
                  attention.attention_mask(valid, valid)),
      'packed': (TokenMask(query_segments=segments, key_segments=segments,
                           causal=True),
                 attention.combine_masks(
                     attention.causal_mask(length),
                     attention.segment_mask(segments, segments))),
      'none': (None, None),
  }


@pytest.mark.parametrize('mask_name', ['causal', 'padding', 'packed'])
def test_token_mask_is_the_dense_mask_whole_and_block_by_block(mask_name):
  token_mask, dense = masks()[mask_name]
  whole = token_mask.dense(Q, Q)
  np.testing.assert_array_equal(np.broadcast_to(whole, (B, 1, Q, Q)),
                                np.broadcast_to(dense, (B, 1, Q, Q)))
  pieces = {name: x[:, 4:7] for name, x in token_mask.key_pieces().items()}
  block = token_mask.replace(**pieces).dense(Q, 3, key_start=4)
  np.testing.assert_array_equal(np.broadcast_to(block, (B, 1, Q, 3)),
                                np.broadcast_to(dense, (B, 1, Q, Q))[..., 4:7])


def attend(impl, block_size, query, key, value, mask):
  return attention.dot_product_attention(
      query, key, value, mask, dropout_rate=0.0, dropout_rng=None,
      deterministic=True, impl=impl, dtype=jnp.float32,
      block_size=block_size)


@pytest.mark.parametrize('mask_name', ['causal', 'padding', 'packed', 'none'])
@pytest.mark.parametrize('block_size, kv_heads', [(4, H), (3, 2), (16, 1)])
def test_blockwise_equals_einsum_forward_and_gradients(mask_name, block_size,
                                                       kv_heads):
  """Block 3 leaves a ragged last block of 10 keys; 16 is one block. The
  reference gets the dense mask of attention.py's helpers."""
  token_mask, dense = masks()[mask_name]
  inputs = qkv(kv_heads)
  cotangent = jnp.asarray(np.random.RandomState(1).standard_normal(
      (B, Q, H, D)), jnp.float32)

  def loss(impl, *args):
    mask = token_mask if impl == 'blockwise' else dense
    return jnp.sum(attend(impl, block_size, *args, mask) * cotangent)

  np.testing.assert_allclose(
      attend('blockwise', block_size, *inputs, token_mask),
      attend('einsum', block_size, *inputs, dense), atol=1e-5)
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
  mask, _ = masks()['causal']
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


def test_blockwise_refuses_a_dense_mask_in_one_line():
  with pytest.raises(ValueError, match='takes a models.token_mask.TokenMask'
                     ) as error:
    attend('blockwise', 4, *qkv(), attention.causal_mask(Q))
  assert '\n' not in str(error.value)


def _shapes(jaxpr):
  """Every shape in `jaxpr` and the jaxprs inside it (scan bodies,
  custom-VJP rules, jit calls): its variables and its constants."""
  for eqn in jaxpr.eqns:
    for var in (*eqn.invars, *eqn.outvars):
      yield getattr(var.aval, 'shape', ())
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        inner = getattr(sub, 'jaxpr', sub)
        if hasattr(inner, 'eqns'):
          yield from _shapes(inner)


@pytest.mark.parametrize('model', ['decoder_lm_packed', 'bert_padded'])
def test_no_q_by_k_array_in_the_blockwise_training_step(model):
  """At 1,024 tokens (blocks of 128) the loss and gradients of a causal LM
  with packed segments and of BERT with padding never hold an array of
  1,024 x 1,024 elements or more, mask or scores: the largest is a block's
  [b, h, q, 128]. The einsum attention's jaxpr does, which shows the check
  can fail."""
  length = 1024
  ids = np.random.RandomState(0).randint(1, 30, (1, length))
  segments = np.repeat(np.arange(1, 5), length // 4)[None]

  def largest(impl):
    cfg = tiny_lm(impl).replace(max_len=length, attention_block_size=128)
    if model == 'bert_padded':
      cfg = cfg.replace(position_embedding='learned', type_vocab_size=2,
                        norm_position='post', num_kv_heads=0)
      net = BertForPreTraining(cfg)
      args = (ids, None, (np.arange(length) < 900)[None].astype(np.int32))
      loss = lambda p: net.apply({'params': p}, *args)['mlm_logits'].sum()
    else:
      net = DecoderLM(cfg)
      args = (ids, None, segments)
      loss = lambda p: net.apply({'params': p}, *args).sum()
    params = jax.eval_shape(net.init, jax.random.key(0), *args)['params']
    jaxpr = jax.make_jaxpr(jax.value_and_grad(loss))(params).jaxpr
    return max(int(np.prod(shape)) for shape in _shapes(jaxpr))

  assert largest('einsum') >= length * length
  assert largest('blockwise') < length * length


def forward_and_gradients(impl, token_mask, dense, inputs, dtype=jnp.float32):
  """(output, gradients of q, k, v) of `impl` (given the TokenMask, as the
  models give it) and of the einsum reference (given the dense mask of
  attention.py's helpers), in float32 whatever `dtype` computed.

  A query that sees no key (padding) gets no cotangent, as no loss reads
  it: there cuDNN, which adds the mask to the logits as a bias, still
  follows the logits in its backward pass, where the reference has none.
  """
  cotangent = jnp.asarray(np.random.RandomState(1).standard_normal(
      inputs[0].shape), jnp.float32)
  if dense is not None:
    sees_a_key = np.broadcast_to(dense, (B, 1) + dense.shape[2:]).any(-1)
    cotangent = cotangent * sees_a_key[:, 0, :, None, None]

  def run(impl, mask, *args):
    args = [x.astype(dtype) for x in args] if impl != 'einsum' else args
    out = attention.dot_product_attention(
        *args, mask, dropout_rate=0.0, dropout_rng=None, deterministic=True,
        impl=impl, dtype=args[0].dtype).astype(jnp.float32)
    return jnp.sum(out * cotangent), out

  return [jax.value_and_grad(functools.partial(run, name, mask), (0, 1, 2),
                             has_aux=True)(*inputs)
          for name, mask in ((impl, token_mask), ('einsum', dense))]


def assert_same(got, reference, atol):
  (_, out), grads = got
  (_, reference_out), reference_grads = reference
  np.testing.assert_allclose(out, reference_out, atol=atol)
  for g, r in zip(grads, reference_grads):
    assert np.abs(np.asarray(r)).max() > 1e-3
    np.testing.assert_allclose(g, r, atol=atol)


@pytest.mark.parametrize('mask_name', ['causal', 'padding', 'packed', 'none'])
def test_fused_equals_einsum_forward_and_gradients(mask_name):
  """jax.nn.dot_product_attention (XLA's) with the models' TokenMask made
  dense, packed segments included; 2 key/value heads for 4 query heads."""
  assert_same(*forward_and_gradients('fused', *masks()[mask_name], qkv(2)),
              atol=1e-5)


@pytest.mark.parametrize('mask_name', ['causal', 'padding', 'packed', 'none'])
def test_cudnn_masks_mean_what_the_reference_masks_mean(mask_name):
  """What cuDNN is given (a boolean mask and/or its own causal flag),
  checked on any machine through XLA's implementation of the same call:
  a training step's causality needs no mask array at all."""
  token_mask, dense = masks()[mask_name]
  mask, is_causal = attention.cudnn_mask(token_mask, Q, Q)
  assert is_causal == (mask_name in ('causal', 'packed'))
  assert (mask is None) == (mask_name in ('causal', 'none'))
  query, key, value = qkv(2)
  out = jax.nn.dot_product_attention(query, key, value, mask=mask,
                                     is_causal=is_causal,
                                     implementation='xla')
  reference = attend('einsum', 4, query, key, value, dense)
  np.testing.assert_allclose(out, reference, atol=1e-5)


def test_cudnn_gets_its_causal_flag_inside_traced_layers():
  """nn.scan and remat trace every number a layer receives; a training
  step's causality must still reach cuDNN as its flag, not as a mask."""
  flags = []
  jax.jit(lambda m: flags.append(attention.cudnn_mask(m, Q, Q)))(
      TokenMask(causal=True))
  assert flags == [(None, True)]


def test_cudnn_masks_of_a_decoding_step_stay_a_mask():
  """Queries at cache slots 3 and 4 of 10: cuDNN's causal flag would put
  them at 0 and 1, so the mask goes as a boolean."""
  mask, is_causal = attention.cudnn_mask(
      TokenMask(causal=True, query_offset=3), 2, 10)
  assert not is_causal
  np.testing.assert_array_equal(mask[0, 0],
                                np.arange(10)[None] <= np.array([[3], [4]]))


@pytest.mark.skipif(jax.default_backend() != 'gpu', reason='needs a GPU')
@pytest.mark.parametrize('mask_name', ['causal', 'padding', 'packed', 'none'])
def test_cudnn_equals_einsum_forward_and_gradients_on_a_gpu(mask_name):
  """cuDNN flash attention in bfloat16 against the float32 reference, at a
  length and head size cuDNN's kernels take (256 tokens, heads of 64)."""
  inputs = qkv(2, k_len=256, length=256, head_dim=64)
  assert_same(*forward_and_gradients('cudnn', *masks(256)[mask_name], inputs,
                                     dtype=jnp.bfloat16), atol=5e-2)


def test_cudnn_is_refused_in_one_line_without_a_gpu_or_in_float32():
  from configs import base_config, llama_small  # pylint: disable=g-import-not-at-top
  config = llama_small.get_config()
  config.model.update(attention_impl='cudnn', dtype='bfloat16')
  base_config.validate(config)  # the values alone are fine
  if jax.default_backend() != 'gpu':
    with pytest.raises(ValueError, match=r"^config\.model\.attention_impl="
                       r"'cudnn' needs a GPU .* backend is 'cpu'") as error:
      base_config.validate(config, 8)
    assert '\n' not in str(error.value)
  with pytest.raises(ValueError, match='attention_impl="cudnn" needs '
                     'model.dtype bfloat16 or float16'):
    tiny_lm('cudnn')  # float32
