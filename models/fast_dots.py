"""Matmuls whose backward pass uses only the dot forms XLA:CPU runs fast.

On the CPU backend XLA hands a dot to its library kernels (YNNPACK, which
uses AMX for bf16 on Intel) only when the left operand contracts over its
last (minor) dimension. The weight gradient of `y = x @ w`, `x.T @ dy`,
contracts `x` over its first dimension, so autodiff gives XLA a dot that it
runs in its own loop emitter, converting bf16 to float32 and back, several
times slower than the same FLOPs in the library (experiments/performance.md,
section 0, "Where bf16 lost its time, and the fix").
The functions here have custom VJPs that write such gradients as
`transpose(x) @ dy`, with the transpose materialised in bf16 (see
`materialize`), so every backward dot is `a @ b` or `a @ b.T` on
row-major operands. The transposed copy is one memory pass over
an activation, far cheaper than the slow dot.

Forward values are those of the plain dot; gradients are mathematically
the same, computed in the operands' dtype (as autodiff does for bf16).
Used only on the CPU backend, where models/fast_paths.py turns them on:
for the dense and output layers in bf16 and float32 (in float32 the gain is
XLA's slow transposes of the activations, replaced by `transpose`), for
attention's dots in bf16 only. GPU keeps XLA's own dots.
"""
import functools

import jax
import jax.numpy as jnp
from jax import lax


def materialize(x):
  """x as a row-major array of its own, whatever produced it.

  XLA:CPU turns a transpose that feeds a dot into a layout change of the
  dot's operand; a bf16 dot with a non-row-major operand is then run in
  float32 (its operands converted) or by XLA's loop emitter. Passing the
  value through a flat 1-D optimization barrier, which has only one layout,
  forces the copy to happen here, in bf16, and the dot to get a row-major
  operand.
  """
  return lax.optimization_barrier(x.reshape(-1)).reshape(x.shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def swapaxes(x, axis1: int, axis2: int):
  """jnp.swapaxes as a row-major copy, and its gradient as well."""
  return materialize(jnp.swapaxes(x, axis1, axis2))


def _swapaxes_fwd(x, axis1, axis2):
  return swapaxes(x, axis1, axis2), None


def _swapaxes_bwd(axis1, axis2, _, g):
  return (materialize(jnp.swapaxes(g, axis1, axis2)),)


swapaxes.defvjp(_swapaxes_fwd, _swapaxes_bwd)


# Side of the square tiles `transpose` moves through: the fastest of 16, 32
# and 64 for bf16 and float32 activations when it was chosen (59801aa; the
# comparison is not in the records, the tiled transposes' effect is:
# experiments/performance.md, section 6).
TRANSPOSE_TILE = 16


def transpose(x):
  """x [..., n, m] -> [..., m, n] as a real row-major copy, tile by tile.

  XLA:CPU emits a transpose as one loop over the output, which walks the
  input down its columns: at a 1024 x 3072 activation every read misses the
  cache and the copy runs many times slower than a plain one
  (experiments/performance.md, section 6, "Tiled transposes"). Two passes over
  T x T tiles keep both sides local: the first gathers each tile's rows
  into one contiguous block ([I, a, J, b] -> [I, J, a, b]; runs of T
  elements), the second transposes within the tiles while swapping them
  ([I, J, a, b] -> [J, b, I, a], every tile in L1). Each pass is
  materialised, or XLA would merge them back into one transpose. Sides
  that T does not divide are zero-padded and sliced off.
  """
  t = TRANSPOSE_TILE
  *batch, n, m = x.shape
  pad_n, pad_m = -n % t, -m % t
  if pad_n or pad_m:
    x = jnp.pad(x, [(0, 0)] * len(batch) + [(0, pad_n), (0, pad_m)])
  big_n, big_m = n + pad_n, m + pad_m
  k = len(batch)
  tiles = x.reshape(*batch, big_n // t, t, big_m // t, t)
  tiles = materialize(jnp.transpose(
      tiles, (*range(k), k, k + 2, k + 1, k + 3)))          # [I, J, a, b]
  out = materialize(jnp.transpose(
      tiles, (*range(k), k + 1, k + 3, k, k + 2)).reshape(*batch, big_m,
                                                           big_n))
  if pad_n or pad_m:
    out = materialize(out[..., :m, :n])
  return out


def _dot(a, b, contract_b: int, out_dtype):
  """a [..., m, k] times b [..., k, n] (contract_b=-2) or b [..., n, k]
  (contract_b=-1), batch dims leading: the two fast forms."""
  batch = tuple(range(a.ndim - 2))
  return lax.dot_general(
      a, b, (((a.ndim - 1,), (b.ndim + contract_b,)), (batch, batch)),
      preferred_element_type=out_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _matmul(a, b, transpose_b: bool, out_dtype, wide_b: bool = False):
  return _dot(a, b, -1 if transpose_b else -2, out_dtype)


def _matmul_fwd(a, b, transpose_b, out_dtype, wide_b=False):
  return _matmul(a, b, transpose_b, out_dtype, wide_b), (a, b)


def _matmul_bwd(transpose_b, out_dtype, wide_b, residuals, g):
  del out_dtype
  a, b = residuals
  g = g.astype(a.dtype)  # gradient dots in the operands' dtype
  if transpose_b:  # y = a @ b.T: da = g @ b, db = g.T @ a
    da = _dot(g, b, -2, a.dtype)
    if wide_b:  # db = (a.T @ g).T; see logits_matmul
      # Materialised first, or XLA folds the transpose into the dot's
      # output layout and runs a slow dot.
      db_t = materialize(_dot(transpose(a), g, -2, b.dtype))
      db = materialize(jnp.swapaxes(db_t, -1, -2))
    else:
      db = _dot(transpose(g), a, -2, b.dtype)
  else:  # y = a @ b: da = g @ b.T, db = a.T @ g
    da = _dot(g, b, -1, a.dtype)
    db = _dot(transpose(a), g, -2, b.dtype)
  return da, db


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def matmul(a, b, out_dtype=None):
  """a [..., m, k] @ b [..., k, n] -> [..., m, n] (leading dims batch)."""
  return _matmul(a, b, False, out_dtype or a.dtype)


def matmul_nt(a, b, out_dtype=None):
  """a [..., m, k] @ b[..., n, k].T -> [..., m, n] (leading dims batch)."""
  return _matmul(a, b, True, out_dtype or a.dtype)


def logits_matmul(a, table, out_dtype=None):
  """a [t, k] @ table [v, k].T -> [t, v]: the tied output layer.

  Same value and gradients as `matmul_nt`, but the table's gradient is
  computed as (transpose(a) @ g) [k, v] and then transposed by XLA. Two
  things differ from a hidden layer's weight: the gradient g [t, v] is the
  large operand here, and at a vocabulary that 16 does not divide (30,522,
  50,257) the tiled `transpose` pads and slices it, where XLA transposes
  such wide arrays faster. Measured at BERT-base's and GPT-2 small's sizes
  with experiments/step_parts_benchmark.py: experiments/performance.md,
  section 9, change 2.
  """
  return _matmul(a, table, True, out_dtype or a.dtype, True)


@jax.custom_vjp
def add_bias(y, bias):
  """y [tokens, features] + bias [features].

  Autodiff's bias gradient is a bf16 sum of the output gradient over the
  tokens, which XLA:CPU compiles as a float32 copy of the gradient and a
  windowed tree reduction in its loop emitter. Asking the sum itself for
  float32 accumulation compiles to one library reduce instead
  (experiments/performance.md, section 7, "The bias gradients").
  """
  return y + bias


def _add_bias_fwd(y, bias):
  return add_bias(y, bias), bias


def _add_bias_bwd(bias, g):
  return g, g.sum(0, dtype=jnp.float32).astype(bias.dtype)


add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


def dense_dot_general(lhs, rhs, dimension_numbers, precision=None,
                      preferred_element_type=None):
  """lax.dot_general for flax Dense/DenseGeneral (`dot_general=`).

  The layer's form, lhs [..., K...] contracting its trailing dims with the
  kernel's leading dims [K..., N...] and no batch dims, runs as one 2-D
  `matmul`; any other form falls back to lax.dot_general.
  """
  (lhs_contract, rhs_contract), (lhs_batch, _) = dimension_numbers
  n = len(lhs_contract)
  standard = (not lhs_batch and
              tuple(lhs_contract) == tuple(range(lhs.ndim - n, lhs.ndim)) and
              tuple(rhs_contract) == tuple(range(n)))
  if not standard:
    return lax.dot_general(lhs, rhs, dimension_numbers, precision,
                           preferred_element_type=preferred_element_type)
  outer, features = lhs.shape[:lhs.ndim - n], rhs.shape[n:]
  inner = rhs.shape[:n]
  y = matmul(lhs.reshape((-1,) + (_prod(inner),)),
             rhs.reshape((_prod(inner), -1)), preferred_element_type)
  return y.reshape(outer + features)


def _prod(shape) -> int:
  size = 1
  for s in shape:
    size *= s
  return size
