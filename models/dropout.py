"""Dropout: which generator draws the masks, and how many bits a decision.

Flax's `nn.Dropout` draws a 32-bit threefry word per element. On CPU those
draws were a large part of the Multi30k training step
(experiments/performance.md, sections 2 and 3).
With `model.dropout_bits=8` each 32-bit word gives four decisions (16: two),
so the generator runs 4x (2x) less. The drop probability is then a multiple
of 1/256 (1/65536): 0.3 becomes 77/256 = 0.3008. Kept values are divided by
the keep probability actually used, so the expectation is still exact.
FlashAttention draws its dropout decisions at 8 bits the same way.

`model.dropout_prng` picks the generator. jax's default, threefry2x32, is
lowered on the CPU backend as a rolled loop of 5 iterations that writes two
uint32 arrays of the mask's size on each; jax's threefry4x32 (Random123's
Threefry-4x32-20, a 128-bit key) lowers to straight-line elementwise code
that XLA fuses into one pass (both measured with
experiments/step_parts_benchmark.py: experiments/performance.md, section
9, change 1). 'auto' uses it on the CPU backend and leaves other backends
(GPU: a CUDA threefry2x32 kernel) with the key flax hands out; the choice
is made once, in models/fast_paths.py, and arrives here as a jax PRNG
implementation name (None: flax's key as it is).
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


def dropout_key(rng, impl: str | None):
  """rng (flax's dropout key) as a key of the jax PRNG `impl` (None: rng).

  A new generator's key is seeded with 128 bits drawn from rng, so masks
  still follow the dropout rng: a different rng, different masks.
  """
  if impl is None:
    return rng
  return jax.random.wrap_key_data(jax.random.bits(rng, (4,), jnp.uint32),
                                  impl=impl)


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


def apply_dropout(x, rng, rate: float, bits: int = 32,
                  prng: str | None = None):
  """Inverted dropout: zero with probability ~rate, scale the rest up;
  the masks from the jax PRNG `prng` (None: rng's own)."""
  keep, keep_prob = keep_mask(dropout_key(rng, prng), rate, x.shape, bits)
  # Computed once: XLA would otherwise fuse the generator into each
  # consumer of the mask (the forward select and the backward one, the
  # latter often in a fusion with other masks), so a training step drew
  # every mask several times and the threefry4x32 rounds were compiled
  # once per copy (a tiny encoder-decoder's step: 85k lines of optimised
  # HLO instead of 19k, 18 s to compile instead of 4).
  keep = jax.lax.optimization_barrier(keep)
  return jnp.where(keep, x / jnp.asarray(keep_prob, x.dtype),
                   jnp.zeros((), x.dtype))


class Dropout(nn.Module):
  """`nn.Dropout` with a choice of generator and of random bits per
  decision (see above)."""
  rate: float
  bits: int = 32
  prng: str | None = None  # a jax PRNG implementation; None: flax's key

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    return apply_dropout(x, self.make_rng('dropout'), self.rate, self.bits,
                         self.prng)


def dropout_for(config, rate: float) -> Dropout:
  """The Dropout layer a ModelConfig asks for at `rate`."""
  return Dropout(rate, config.dropout_bits, config.fast_paths.dropout_prng)
