"""training/optimizers.py and train_step's use of it: the clipping that
takes train_step's gradient norm, and the update it makes."""
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.core import meta

from configs import base_config
from models.config import ModelConfig
from training import optimizers
from training import steps as steps_lib


def opt_config():
  """The base config's optimizer as AdamW with clipping at 1.0."""
  config = base_config.base_config().optimizer
  config.update(name='adamw', schedule='constant', learning_rate=1e-2,
                warmup_steps=0, b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.1,
                grad_clip_norm=1.0)
  return config


class LinearTask:
  """Least squares, summed: the loss_sums contract of tasks/."""
  # The step takes its fast paths (the cond-guarded update) from the
  # task's model config, as from any task's.
  model_config = ModelConfig(vocab_size=2, d_model=8, num_heads=1, d_ff=8,
                             num_layers=1)

  def loss_sums(self, params, batch, rng, train):
    del rng, train
    err = batch['x'] @ params['w'] + params['b'] - batch['y']
    return {'loss': jnp.sum(err ** 2), 'weight': jnp.float32(err.size)}


def state_and_step(params, optimizer):
  """A fresh TrainState and train_step on LinearTask, jitted."""
  state = steps_lib.TrainState(step=jnp.array(0, jnp.int32), params=params,
                           opt_state=optimizer.init(params))
  return state, jax.jit(functools.partial(
      steps_lib.train_step, task=LinearTask(), optimizer=optimizer,
      axis_name=None, grad_accum_steps=1))


def linear_problem(scale):
  keys = jax.random.split(jax.random.key(0), 3)
  params = {'w': jax.random.normal(keys[0], (48, 40)), 'b': jnp.zeros(40)}
  batch = {'x': jax.random.normal(keys[1], (16, 48)) * scale,
           'y': jax.random.normal(keys[2], (16, 40))}
  return params, batch


@pytest.mark.parametrize('max_norm', [0.05, 1e6])  # clips; does not
def test_clip_equals_optax_clip_by_global_norm(max_norm):
  grads = {'w': jnp.arange(12.0).reshape(3, 4) - 5.0, 'b': jnp.ones(4)}
  ours = optimizers.clip_by_global_norm(max_norm)
  theirs = optax.clip_by_global_norm(max_norm)
  got, state = ours.update(grads, ours.init(grads), grad_norm=optax.tree.norm(
      grads))
  want, their_state = theirs.update(grads, theirs.init(grads))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  # Same (empty) state, so checkpoints written before keep their layout.
  assert (jax.tree.structure(state) == jax.tree.structure(their_state))


@pytest.mark.parametrize('scale', [0.01, 30.0])  # gradient norm under/over 1
def test_train_step_update_equals_optax_on_the_mean_gradient(scale):
  """train_step (mean taken inside the update, clipping by its norm) makes
  the update of optax's own clip + AdamW applied to the mean gradient."""
  config = opt_config()
  params, batch = linear_problem(scale)
  task = LinearTask()
  optimizer, schedule = optimizers.make_optimizer(config, 10)
  state, step = state_and_step(params, optimizer)
  reference = optax.chain(
      optax.clip_by_global_norm(1.0),
      optax.adamw(schedule, b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.1))
  def mean_loss(p):
    sums = task.loss_sums(p, batch, None, True)
    return sums['loss'] / sums['weight']
  ref_params, ref_state = params, reference.init(params)
  for _ in range(3):
    state, metrics = step(state, batch, jax.random.key(1))
    grads = jax.grad(mean_loss)(ref_params)
    np.testing.assert_allclose(metrics['grad_norm'], optax.tree.norm(grads),
                               rtol=1e-5)
    updates, ref_state = reference.update(grads, ref_state, ref_params)
    ref_params = optax.apply_updates(ref_params, updates)
  assert (metrics['grad_norm'] > 1.0) == (scale > 1.0)  # both cases tested
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_params)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_cpu_step_writes_no_scaled_copy_of_the_gradients():
  """The mean and the clipping are multiplications inside the update, so
  XLA fuses them into Adam's loops. Dividing before it wrote every gradient
  out once more (and optax's clip once again)."""
  params, batch = linear_problem(1.0)
  optimizer, _ = optimizers.make_optimizer(opt_config(), 10)
  state, step = state_and_step(params, optimizer)
  text = step.lower(state, batch, jax.random.key(0)).compile().as_text()
  # Fusions that write a whole f32[48,40] array, in the computations that
  # run (not inside fusion bodies): Adam's three outputs (mu, nu and the
  # parameters) and the squared gradient of the norm. Before, two more
  # divided copies (the mean, optax's clip) and a multiplied one.
  writes = []
  for computation in text.split('\n\n'):
    lines = computation.strip().splitlines()
    if not lines or 'fused' in lines[0] or 'wrapped' in lines[0]:
      continue
    writes += [line.split(' = ')[0].strip() for line in lines[1:]
               if re.match(r'\s*(ROOT )?%\S+ = f32\[48,40\]\{1,0\} fusion\(',
                           line)]
  # Adam's three outputs must be written whatever XLA fuses: fewer matches
  # mean the pattern no longer finds the writes it counts.
  assert 3 <= len(writes) <= 4, writes


# -------------------------------------------------------------- schedules --
def schedule_of(**fields):
  config = base_config.base_config().optimizer
  config.update(**fields)
  return optimizers.learning_rate_schedule(config, total_steps=1000)


@pytest.mark.parametrize('step', [0, 999, 3998, 3999, 4000, 15999, 99999])
def test_rsqrt_schedule_is_the_papers_formula(step):
  """Vaswani et al. 2017, eq. 3, with step_num = step + 1:
  d_model^-0.5 * min(step_num^-0.5, step_num * warmup^-1.5), whose peak
  (at the end of warmup) is the config's learning_rate."""
  d_model, warmup = 512, 4000
  peak = d_model ** -0.5 * warmup ** -0.5
  schedule = schedule_of(schedule='rsqrt', learning_rate=peak,
                         warmup_steps=warmup)
  n = step + 1
  paper = d_model ** -0.5 * min(n ** -0.5, n * warmup ** -1.5)
  assert float(schedule(step)) == pytest.approx(paper, rel=1e-6)
  assert peak == pytest.approx(6.99e-4, rel=1e-3)  # the paper's base model


@pytest.mark.parametrize('step', [0, 50, 100, 325, 550, 775, 1000, 1500])
def test_cosine_schedule_warms_up_then_follows_half_a_cosine(step):
  """Linear from 0 to the peak over `warmup_steps`, then
  end + (peak - end) * (1 + cos(pi * t / (total - warmup))) / 2 at t steps
  after warmup, and `end_learning_rate` from `total_steps` on."""
  peak, end, warmup, total = 1e-3, 1e-4, 100, 1000
  schedule = schedule_of(schedule='cosine', learning_rate=peak,
                         warmup_steps=warmup, end_learning_rate=end)
  if step < warmup:
    expected = peak * step / warmup
  else:
    t = min(step, total) - warmup
    expected = end + (peak - end) * (1 + np.cos(np.pi * t / (total - warmup))
                                     ) / 2
  assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-9)


# ------------------------------------------------------------ decay mask --
def test_adamw_decays_kernels_and_embeddings_not_biases_or_norms():
  """decay_only_matrices: with zero gradients Adam's step is 0, so the only
  change is the decay: p -> p * (1 - lr * weight_decay) for kernels and
  embeddings, none for biases and LayerNorm scales. Checked on every
  parameter of a real model (layers stacked by nn.scan too); without the
  mask every parameter decays."""
  from models.config import ModelConfig  # pylint: disable=g-import-not-at-top
  from models.encoder_decoder import EncoderDecoder  # pylint: disable=g-import-not-at-top
  cfg = ModelConfig(vocab_size=20, d_model=16, num_heads=2, d_ff=32,
                    num_layers=1, max_len=8, scan_layers=True)
  ids = jnp.ones((1, 4), jnp.int32)
  params = meta.unbox(EncoderDecoder(cfg).init(jax.random.key(0), ids,
                                               ids)['params'])
  params = jax.tree.map(lambda p: p + 1.0, params)  # no zero biases
  names = [path[-1].key for path, _ in
           jax.tree_util.tree_leaves_with_path(params)]
  assert {'kernel', 'embedding', 'bias', 'scale'} <= set(names)
  for only_matrices in (True, False):
    config = opt_config()
    config.update(learning_rate=0.5, weight_decay=0.1, grad_clip_norm=0.0,
                  decay_only_matrices=only_matrices)
    optimizer, schedule = optimizers.make_optimizer(config, 10)
    state = optimizer.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    new = params
    for _ in range(2):  # the first step's learning rate is 0 (warmup)
      updates, state = optimizer.update(zeros, state, new)
      new = optax.apply_updates(new, updates)
    assert (float(schedule(0)), float(schedule(1))) == (0.0, 0.5)
    factor = 1 - 0.5 * 0.1

    def check(path, before, after):
      decays = path[-1].key in ('kernel', 'embedding') or not only_matrices
      np.testing.assert_allclose(after, before * (factor if decays else 1.0),
                                 rtol=1e-6, err_msg=jax.tree_util.keystr(path))
    jax.tree_util.tree_map_with_path(check, params, new)
