"""cross_entropy_sums' closed-form gradient equals autodiff of its definition."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from training import losses


def definition(logits, targets, weights, eps):
  """The smoothed cross entropy written out: the target gets 1 - eps, each
  other class eps / (K - 1); minus the smoothed distribution's entropy."""
  k = logits.shape[-1]
  q = jnp.where(jax.nn.one_hot(targets, k) > 0, 1 - eps, eps / (k - 1))
  log_p = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
  entropy = -(q * jnp.log(jnp.where(q > 0, q, 1.0))).sum(-1)
  return ((-(q * log_p).sum(-1) - entropy) * weights).sum()


@pytest.mark.parametrize('eps', [0.0, 0.1])
@pytest.mark.parametrize('shape', [(6, 40), (2, 5, 30522)])
def test_loss_and_gradient_equal_the_definition(eps, shape):
  k = jax.random.split(jax.random.key(0), 3)
  logits = 3 * jax.random.normal(k[0], shape)
  targets = jax.random.randint(k[1], shape[:-1], 0, shape[-1])
  weights = (jax.random.uniform(k[2], shape[:-1]) > 0.3).astype(jnp.float32)
  ours = lambda z: losses.cross_entropy_sums(z, targets, weights, eps)['loss']
  want = definition(logits, targets, weights, eps)
  np.testing.assert_allclose(jax.jit(ours)(logits), want, rtol=1e-5)
  got_grad = jax.jit(jax.grad(ours))(logits)
  want_grad = jax.grad(definition)(logits, targets, weights, eps)
  np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-7)
  # Positions without weight get no gradient at all.
  assert float(jnp.abs(got_grad[weights == 0]).max()) == 0.0


def test_hits_weight_and_bfloat16_logits():
  logits = jnp.asarray([[0.1, 2.0, -1.0], [3.0, 0.0, 1.0], [0.0, 0.5, 0.2]])
  targets = jnp.asarray([1, 2, 1])
  weights = jnp.asarray([1.0, 1.0, 0.0])
  sums = losses.cross_entropy_sums(logits, targets, weights)
  assert float(sums['correct']) == 1.0  # row 0 hits; row 2 hits, weight 0
  assert float(sums['weight']) == 2.0
  grad = jax.grad(lambda z: losses.cross_entropy_sums(
      z, targets, weights)['loss'])(logits.astype(jnp.bfloat16))
  assert grad.dtype == jnp.bfloat16
  np.testing.assert_allclose(
      grad.astype(jnp.float32),
      jax.grad(definition)(logits, targets, weights, 0.0), atol=1e-2)
