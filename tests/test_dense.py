"""models/dense.py: flax's Dense/DenseGeneral parameters and values, and the
fast path's bias gradient (fast_dots.add_bias)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import fast_dots
from models.dense import Dense
from models.logical_axes import with_axes

CASES = (  # (ours, flax's, input shape)
    (dict(features=6), nn.Dense(6), (2, 3, 8)),
    (dict(features=(3, 4)), nn.DenseGeneral((3, 4)), (2, 3, 8)),
    (dict(features=5, axis=(-2, -1)), nn.DenseGeneral(5, axis=(-2, -1)),
     (2, 3, 4, 6)),
)


@pytest.mark.parametrize('ours,theirs,shape', CASES)
def test_parameters_and_outputs_equal_flax(ours, theirs, shape):
  """Same names, shapes and random values from the same key, with the
  default and with a logically-named initialiser; same outputs."""
  x = jax.random.normal(jax.random.key(1), shape)
  for init in (nn.initializers.lecun_normal(),
               nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform')):
    ours_m = Dense(**ours, kernel_init=init,
                   bias_init=nn.initializers.normal(0.1))
    theirs_m = theirs.clone(kernel_init=init,
                            bias_init=nn.initializers.normal(0.1))
    p = ours_m.init(jax.random.key(0), x)['params']
    q = theirs_m.init(jax.random.key(0), x)['params']
    assert jax.tree.structure(p) == jax.tree.structure(q)
    for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q)):
      np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(ours_m.apply({'params': p}, x),
                               theirs_m.apply({'params': q}, x), rtol=1e-6)


def test_logical_axis_names_survive_the_flattened_init():
  x = jnp.ones((2, 3, 8))
  named = Dense(features=6, kernel_init=with_axes(
      nn.initializers.lecun_normal(), 'embed', 'mlp')).init(
          jax.random.key(0), x)['params']['kernel']
  assert named.names == ('embed', 'mlp') and named.value.shape == (8, 6)


def test_axis_must_be_trailing():
  with pytest.raises(ValueError, match=r'Dense .*axis=\(0,\) must be the '
                     'trailing'):
    Dense(4, axis=(0,)).init(jax.random.key(0), jnp.ones((2, 3)))


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_fast_path_gradients_equal_autodiff(dtype):
  """Forward and every gradient (kernel, bias, input) of the fast path
  against the plain one; exact in float32, within bf16 rounding in bf16."""
  x = jax.random.normal(jax.random.key(1), (4, 16, 24))
  w = jax.random.normal(jax.random.key(2), (4, 16, 3, 8))
  def loss_and_grads(fast):
    layer = Dense((3, 8), dtype=dtype, fast_dots=fast,
                  bias_init=nn.initializers.normal(1.0))
    params = layer.init(jax.random.key(0), x)['params']
    def loss(p, x):
      return (layer.apply({'params': p}, x).astype(jnp.float32) * w).sum()
    return jax.value_and_grad(loss, (0, 1))(params, x)
  value, grads = loss_and_grads(True)
  ref_value, ref_grads = loss_and_grads(False)
  tol = 1e-5 if dtype == jnp.float32 else 2e-2
  np.testing.assert_allclose(value, ref_value, rtol=tol)
  for g, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    assert g.dtype == ref.dtype
    scale = np.abs(np.asarray(ref, np.float32)).max()
    np.testing.assert_allclose(np.asarray(g, np.float32),
                               np.asarray(ref, np.float32), atol=tol * scale)


def test_bf16_bias_gradient_is_not_a_window_reduction():
  """The point of add_bias: autodiff's bf16 bias gradient compiles to a
  float32 copy and a reduce-window; add_bias's does not."""
  def bias_grad(fn):
    y = jnp.ones((1024, 256), jnp.bfloat16)
    w = jnp.ones((1024, 256), jnp.float32)
    return jax.jit(jax.grad(
        lambda b, y, w: (fn(y, b).astype(jnp.float32) * w).sum())).lower(
            jnp.zeros((256,), jnp.bfloat16), y, w).compile().as_text()
  assert 'reduce-window' in bias_grad(lambda y, b: y + b)  # what it replaces
  assert 'reduce-window' not in bias_grad(fast_dots.add_bias)
