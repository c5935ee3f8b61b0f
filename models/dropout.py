"""Dropout that can spend 8 or 16 random bits on each keep/drop decision.

Flax's `nn.Dropout` draws a 32-bit threefry word per element. On CPU those
draws were a fifth of the Multi30k training step (experiments/performance.md).
With `model.dropout_bits=8` each 32-bit word gives four decisions (16: two),
so the generator runs 4x (2x) less. The drop probability is then a multiple
of 1/256 (1/65536): 0.3 becomes 77/256 = 0.3008. Kept values are divided by
the keep probability actually used, so the expectation is still exact.
FlashAttention draws its dropout decisions at 8 bits the same way.
"""
import math

import jax
import jax.numpy as jnp
import flax.linen as nn

BITS = (8, 16, 32)
_UINT = {8: jnp.uint8, 16: jnp.uint16}


def quantized_rate(rate: float, bits: int) -> float:
  """The drop probability that `bits` random bits per decision realise."""
  if bits == 32:
    return rate
  levels = 2 ** bits
  return round(rate * levels) / levels


def keep_mask(rng, rate: float, shape, bits: int = 32):
  """(bool mask [shape], keep probability): True keeps the element."""
  if bits == 32:
    return jax.random.bernoulli(rng, 1.0 - rate, shape), 1.0 - rate
  per_word = 32 // bits
  threshold = round(rate * 2 ** bits)
  size = math.prod(shape)
  if shape and shape[-1] % per_word == 0:  # no padding: split the last axis
    words = jax.random.bits(rng, tuple(shape[:-1]) + (
        shape[-1] // per_word,), jnp.uint32)
    draws = jax.lax.bitcast_convert_type(words, _UINT[bits]).reshape(shape)
  else:
    words = jax.random.bits(rng, (-(-size // per_word),), jnp.uint32)
    draws = jax.lax.bitcast_convert_type(words, _UINT[bits]).reshape(-1)
    draws = draws[:size].reshape(shape)
  return draws >= threshold, 1.0 - threshold / 2 ** bits


def apply_dropout(x, rng, rate: float, bits: int = 32):
  """Inverted dropout: zero with probability ~rate, scale the rest up."""
  keep, keep_prob = keep_mask(rng, rate, x.shape, bits)
  return jnp.where(keep, x / jnp.asarray(keep_prob, x.dtype),
                   jnp.zeros((), x.dtype))


class Dropout(nn.Module):
  """`nn.Dropout` with a choice of random bits per decision (see above)."""
  rate: float
  bits: int = 32

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    return apply_dropout(x, self.make_rng('dropout'), self.rate, self.bits)
