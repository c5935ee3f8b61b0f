"""The fused, chunked output layer + loss equals the materialised one."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import causal_lm
from tasks import get_task
from training import losses, loop
from test_train import tiny_config, train_losses

B, T, D, V = 3, 10, 16, 50


def random_problem(seed=0):
  k = jax.random.split(jax.random.key(seed), 4)
  hidden = jax.random.normal(k[0], (B, T, D))
  table = jax.random.normal(k[1], (V, D))
  targets = jax.random.randint(k[2], (B, T), 0, V)
  weights = (jax.random.uniform(k[3], (B, T)) > 0.3).astype(jnp.float32)
  return hidden, table, targets, weights


@pytest.mark.parametrize('smoothing', [0.0, 0.1])
@pytest.mark.parametrize('chunk_length', [1, 3, 5, 10, 16])
def test_sums_and_gradients_equal_the_materialised_logits(smoothing,
                                                          chunk_length):
  hidden, table, targets, weights = random_problem()

  def materialised(h, e):
    return losses.cross_entropy_sums(jnp.einsum('btd,vd->btv', h, e),
                                     targets, weights, smoothing)

  def fused(h, e):
    return losses.fused_output_cross_entropy_sums(h, e, targets, weights,
                                                  smoothing, chunk_length)
  want, got = materialised(hidden, table), jax.jit(fused)(hidden, table)
  for key in ('loss', 'weight', 'correct'):
    np.testing.assert_allclose(got[key], want[key], rtol=1e-5)
  assert float(want['correct']) > 0  # the hit count is exercised
  grad = lambda f: jax.grad(lambda h, e: f(h, e)['loss'], argnums=(0, 1))
  for g_got, g_want in zip(jax.jit(grad(fused))(hidden, table),
                           grad(materialised)(hidden, table)):
    np.testing.assert_allclose(g_got, g_want, rtol=1e-4, atol=1e-5)


def test_gradient_scales_with_the_loss_and_skips_zero_weights():
  hidden, table, targets, weights = random_problem(1)
  weights = weights.at[0].set(0.0)
  loss = lambda h, e: 3.0 * losses.fused_output_cross_entropy_sums(
      h, e, targets, weights, 0.1, 4)['loss']
  d_hidden, _ = jax.grad(loss, argnums=(0, 1))(hidden, table)
  assert float(jnp.abs(d_hidden[0]).max()) == 0.0  # row 0 has no weight
  one = jax.grad(lambda h: losses.fused_output_cross_entropy_sums(
      h, table, targets, weights, 0.1, 4)['loss'])(hidden)
  np.testing.assert_allclose(d_hidden, 3.0 * one, rtol=1e-6)


def test_bfloat16_hidden_states_keep_their_dtype():
  hidden, table, targets, weights = random_problem(2)
  hidden = hidden.astype(jnp.bfloat16)
  d_hidden, d_table = jax.grad(
      lambda h, e: losses.fused_output_cross_entropy_sums(
          h, e, targets, weights, 0.1, 4)['loss'], argnums=(0, 1))(hidden,
                                                                   table)
  assert d_hidden.dtype == jnp.bfloat16 and d_table.dtype == jnp.float32
  want = losses.cross_entropy_sums(
      jnp.einsum('btd,vd->btv', hidden, table.astype(jnp.bfloat16)),
      targets, weights, 0.1)['loss']
  got = losses.fused_output_cross_entropy_sums(hidden, table, targets,
                                               weights, 0.1, 4)['loss']
  np.testing.assert_allclose(got, want, rtol=1e-2)


@pytest.mark.parametrize('parallelism', ['pmap', 'mesh'])
def test_training_with_the_fused_loss_equals_materialised_logits(
    tmp_path, parallelism):
  results = {}
  for chunk in (0, 4):
    workdir = str(tmp_path / f'chunk{chunk}')
    results[chunk] = loop.train_and_evaluate(tiny_config(
        parallelism=parallelism, loss_chunk_length=chunk), workdir)
    results[chunk].losses = train_losses(workdir)
  np.testing.assert_allclose(results[4].losses, results[0].losses, rtol=1e-5)
  for key in ('eval/loss', 'eval/accuracy'):
    np.testing.assert_allclose(results[4].eval_metrics[key],
                               results[0].eval_metrics[key], rtol=1e-5)


def test_causal_lm_task_fused_loss_equals_materialised_logits():
  config = causal_lm.get_config()
  config.model.d_model, config.model.num_heads, config.model.d_ff = 32, 4, 64
  config.model.tie_output_embedding = False  # the untied kernel path
  task = get_task(config)
  params = task.init_variables(jax.random.key(0))['params']
  rows = np.random.default_rng(0).integers(3, config.model.vocab_size,
                                           (4, config.data.max_length + 1))
  batch = dict(inputs=jnp.asarray(rows[:, :-1]),
               targets=jnp.asarray(rows[:, 1:]),
               weights=jnp.ones(rows[:, 1:].shape, jnp.float32))

  def loss_and_grads(chunk):
    task.config.loss_chunk_length = chunk
    return jax.value_and_grad(
        lambda p: task.loss_sums(p, batch, None, train=False)['loss'])(params)
  (want, want_grads), (got, got_grads) = loss_and_grads(0), loss_and_grads(8)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-5),
               got_grads, want_grads)
