"""Blockwise attention with an online softmax (Rabe & Staats 2021; Dao et
al. 2022, FlashAttention), in plain JAX: `model.attention_impl='blockwise'`.

Keys are visited in blocks of `block_size`; per query the running maximum
m, normaliser l and weighted sum o are rescaled as each block arrives, so
the float [b, h, q, k] scores, softmax and probabilities never exist at
once: the working set is [b, h, q, block_size]. The backward pass is
custom (FlashAttention's): it keeps only o, m and l from the forward pass
and recomputes each block's probabilities, so the gradients need no
[b, h, q, k] residuals either.

The mask arrives as per-token pieces (models/token_mask.py: causal,
padding, packed segments): each step slices the key-side pieces to its
block and builds that block's [b, 1, q, block] boolean, so nothing of size
q x k exists, scores or mask. Masked pairs get the reference's finfo.min,
so a query with no visible key averages all values, as the einsum
reference does. No dropout on the probabilities.
"""
import functools

import jax
import jax.numpy as jnp

from models.token_mask import TokenMask

_MASKED = float(jnp.finfo(jnp.float32).min)  # as attention.py's reference


def _to_blocks(x, axis, block):
  """Splits `axis` (padded to a multiple of block) into a leading block
  axis: [..., n*block, ...] -> [n, ..., block, ...]."""
  length = x.shape[axis]
  num_blocks = -(-length // block)
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, num_blocks * block - length)
  x = jnp.pad(x, pad)
  x = x.reshape(x.shape[:axis] + (num_blocks, block) + x.shape[axis + 1:])
  return jnp.moveaxis(x, axis, 0)


def _from_blocks(x, axis, length):
  """The inverse of `_to_blocks` for a [n, ...] stack, cropped to length."""
  x = jnp.moveaxis(x, 0, axis)
  x = x.reshape(x.shape[:axis] + (-1,) + x.shape[axis + 2:])
  return jax.lax.slice_in_dim(x, 0, length, axis=axis)


def _blocks(key, value, mask: TokenMask, block):
  """Scan inputs: key/value [n, b, h, block, d]; the mask's key-side
  pieces {name: [n, b, block]}; which block positions are real keys
  [n, block] (not padding); each block's first key index [n]."""
  length = key.shape[2]
  in_range = _to_blocks(jnp.ones(length, bool), 0, block)
  pieces = {name: _to_blocks(x, 1, block)
            for name, x in mask.key_pieces().items()}
  starts = jnp.arange(in_range.shape[0]) * block
  return (_to_blocks(key, 2, block), _to_blocks(value, 2, block), pieces,
          in_range, starts)


def _scores(query, key_block, mask, pieces, start, in_range):
  """([b, h, q, block] float32 scores, [b or 1, 1, q, block] mask); the
  scores are -inf on the padding past the keys, which then weighs 0 even
  in rows whose keys are all masked."""
  mask_block = mask.replace(**pieces).dense(query.shape[2],
                                            key_block.shape[2], start)
  s = jnp.einsum('bhqd,bhkd->bhqk', query, key_block,
                 preferred_element_type=jnp.float32)
  s = jnp.where(mask_block, s, _MASKED)
  return jnp.where(in_range, s, -jnp.inf), mask_block


def _forward(query, key, value, mask, block):
  """(out [b, h, q, d] float32, m [b, h, q], l [b, h, q])."""
  b, h, q, d = query.shape

  def step(carry, xs):
    out, m, l = carry
    key_block, value_block, pieces, in_range, start = xs
    s, _ = _scores(query, key_block, mask, pieces, start, in_range)
    m_new = jnp.maximum(m, s.max(-1))
    correction = jnp.exp(m - m_new)
    p = jnp.exp(s - m_new[..., None])
    l = l * correction + p.sum(-1)
    out = out * correction[..., None] + jnp.einsum(
        'bhqk,bhkd->bhqd', p, value_block.astype(jnp.float32))
    return (out, m_new, l), None

  init = (jnp.zeros((b, h, q, d), jnp.float32),
          jnp.full((b, h, q), _MASKED, jnp.float32),
          jnp.zeros((b, h, q), jnp.float32))
  (out, m, l), _ = jax.lax.scan(step, init,
                                _blocks(key, value, mask, block))
  return out / l[..., None], m, l


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _attention(query, key, value, mask, block):
  return _forward(query, key, value, mask, block)[0].astype(value.dtype)


def _attention_fwd(query, key, value, mask, block):
  out, m, l = _forward(query, key, value, mask, block)
  return out.astype(value.dtype), (query, key, value, mask, out, m, l)


def _attention_bwd(block, residuals, grad_out):
  query, key, value, mask, out, m, l = residuals
  grad_out = grad_out.astype(jnp.float32)
  # d softmax: dS = P * (dP - rowsum(dO * O)).
  delta = jnp.sum(grad_out * out, axis=-1)

  def step(grad_query, xs):
    key_block, value_block, pieces, in_range, start = xs
    s, mask_block = _scores(query, key_block, mask, pieces, start, in_range)
    p = jnp.exp(s - m[..., None]) / l[..., None]
    grad_value = jnp.einsum('bhqk,bhqd->bhkd', p, grad_out)
    grad_p = jnp.einsum('bhqd,bhkd->bhqk', grad_out,
                        value_block.astype(jnp.float32))
    # Masked scores are constants in the reference (jnp.where): no gradient.
    grad_s = jnp.where(mask_block & in_range,
                       p * (grad_p - delta[..., None]), 0.0)
    grad_query = grad_query + jnp.einsum('bhqk,bhkd->bhqd', grad_s,
                                         key_block.astype(jnp.float32))
    grad_key = jnp.einsum('bhqk,bhqd->bhkd', grad_s,
                          query.astype(jnp.float32))
    return grad_query, (grad_key, grad_value)

  grad_query, (grad_key, grad_value) = jax.lax.scan(
      step, jnp.zeros(query.shape, jnp.float32),
      _blocks(key, value, mask, block))
  length = key.shape[2]
  return (grad_query.astype(query.dtype),
          _from_blocks(grad_key, 2, length).astype(key.dtype),
          _from_blocks(grad_value, 2, length).astype(value.dtype), None)


_attention.defvjp(_attention_fwd, _attention_bwd)


def blockwise_attention(query, key, value, mask: TokenMask | None = None,
                        block_size: int = 128):
  """softmax(q k^T + mask) v over key blocks.  q: [b, q, h, d] (already
  scaled by 1/sqrt(d)), k, v: [b, k, h, d] -> [b, q, h, d].

  mask: a TokenMask (per-token pieces; models/token_mask.py), None: all.
  """
  if mask is None:
    mask = TokenMask()
  if not isinstance(mask, TokenMask):
    raise ValueError('blockwise attention takes a models.token_mask.'
                     f'TokenMask, not a {type(mask).__name__} of shape '
                     f'{getattr(mask, "shape", "?")}: a dense [b, 1, q, k] '
                     'mask is what it avoids')
  heads_first = lambda x: jnp.swapaxes(x, 1, 2)
  out = _attention(heads_first(query), heads_first(key), heads_first(value),
                   mask, min(block_size, key.shape[1]))
  return heads_first(out)
