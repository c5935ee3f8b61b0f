"""Dense layers: flax.linen.Dense/DenseGeneral's parameters and values, with
the CPU fast path (models/fast_dots.py; bf16 and float32) for the bias as
well.

flax's layers let a caller replace the dot (`dot_general=`) but not the
bias add, whose gradient XLA:CPU runs slowly in bf16 (fast_dots.add_bias).
These keep flax's parameter names, shapes and initialisation (the kernel
initialiser sees the flattened [inputs, outputs] shape, as flax's
DenseGeneral gives it), so checkpoints and Hugging Face conversions are
unchanged; a test checks them against flax's.
"""
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
from flax.core import meta
import jax.numpy as jnp
from jax import lax

from models import fast_dots


def _tuple(x) -> tuple:
  return tuple(x) if isinstance(x, Sequence) else (x,)


def _flat_init(init: Callable, n_out: int):
  """init called with the parameter's 2-D (or 1-D) flattening, as flax's
  DenseGeneral calls it (same random values), reshaped to its shape."""
  def wrapped(rng, shape, dtype=jnp.float32):
    flat = ((math.prod(shape[:-n_out]), math.prod(shape[-n_out:]))
            if len(shape) > n_out else (math.prod(shape),))
    value = init(rng, flat, dtype)
    if isinstance(value, meta.AxisMetadata):
      return meta.replace_boxed(value, jnp.reshape(value.unbox(), shape))
    return jnp.reshape(value, shape)
  return wrapped


class Dense(nn.Module):
  """y = x . kernel + bias, contracting `axis` of x with kernel's leading
  dims: kernel [*x.shape[axis], *features], bias [*features]."""
  features: int | Sequence[int]
  axis: int | Sequence[int] = -1
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()
  fast_dots: bool = False  # config.fast_paths.dense_dots

  @nn.compact
  def __call__(self, x):
    features = _tuple(self.features)
    axis = tuple(sorted(a % x.ndim for a in _tuple(self.axis)))
    if axis != tuple(range(x.ndim - len(axis), x.ndim)):
      raise ValueError(f'Dense {self.name}: axis={self.axis} must be the '
                       f'trailing dimensions of an input of rank {x.ndim}')
    kernel = self.param('kernel', _flat_init(self.kernel_init, len(features)),
                        tuple(x.shape[a] for a in axis) + features,
                        self.param_dtype)
    dtype = self.dtype or jnp.result_type(x, kernel)
    x, kernel = jnp.asarray(x, dtype), jnp.asarray(kernel, dtype)
    dot = fast_dots.dense_dot_general if self.fast_dots else lax.dot_general
    n = len(axis)
    y = dot(x, kernel, ((axis, tuple(range(n))), ((), ())))
    if not self.use_bias:
      return y
    bias = jnp.asarray(
        self.param('bias', _flat_init(self.bias_init, len(features)),
                   features, self.param_dtype), dtype)
    if not self.fast_dots:
      return y + bias
    width = math.prod(features)
    return fast_dots.add_bias(y.reshape(-1, width),
                              bias.reshape(width)).reshape(y.shape)
