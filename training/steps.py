"""The pure steps of training and evaluation, and their compiled forms.

`train_step`, `eval_step` and `predict_step` are pure functions of the state
and a batch; `compile_steps` compiles them once for the devices of a
`parallel.Parallel` into a `CompiledSteps`, which the training loop and the
evaluator call. Nothing here does I/O.
"""
import dataclasses
import functools
from typing import Callable

import flax
import jax
import jax.numpy as jnp
import optax

from training import parallel


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: dict
  opt_state: optax.OptState


def train_step(state, batch, rng, *, task, optimizer, axis_name,
               grad_accum_steps):
  """One optimiser update on a global batch -> (state, metric sums).

  Gradients of the loss SUM are summed over microbatches and devices, then
  divided by the global count of target tokens, so one device and N devices
  (or N microbatches) compute the same update.
  """
  rng = jax.random.fold_in(rng, state.step)
  if axis_name:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))

  def grads_and_sums(params, microbatch, micro_rng):
    def loss_fn(p):
      sums = task.loss_sums(p, microbatch, micro_rng, train=True)
      return sums['loss'], sums
    (_, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return grads, sums

  if grad_accum_steps == 1:
    grads, sums = grads_and_sums(state.params, batch, rng)
  else:
    # Strided split: microbatch i holds rows i, i+k, ...; each device keeps
    # its share, and pmap/mesh/one device group the same rows together.
    micro = jax.tree.map(
        lambda x: x.reshape((-1, grad_accum_steps) + x.shape[1:]).swapaxes(
            0, 1), batch)
    def accumulate(carry, xs):
      i, microbatch = xs
      g, s = grads_and_sums(state.params, microbatch,
                            jax.random.fold_in(rng, i))
      return jax.tree.map(jnp.add, carry, (g, s)), None
    zeros = jax.eval_shape(grads_and_sums, state.params,
                           jax.tree.map(lambda x: x[0], micro), rng)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)
    (grads, sums), _ = jax.lax.scan(
        accumulate, zeros, (jnp.arange(grad_accum_steps), micro))
  if axis_name:
    grads, sums = jax.lax.psum((grads, sums), axis_name)
  inverse_count = 1.0 / jnp.maximum(sums['weight'], 1.0)
  grad_norm = optax.tree.norm(grads) * inverse_count
  # A non-finite loss or gradient is never applied, so no NaN enters the
  # state or a checkpoint; the host reads `nonfinite` per step and stops
  # or skips. Both are reduced over devices already, so every device (and
  # pmap and mesh alike) takes the same branch. optax.apply_if_finite would
  # check gradients only and change the optimizer state's layout.
  finite = jnp.isfinite(sums['loss']) & jnp.isfinite(grad_norm)

  def update(params, opt_state):
    # The mean is taken here, as a multiplication by a scalar, so that XLA
    # fuses it into the optimizer's loops. Divided before the cond, every
    # gradient would be written out once more (experiments/performance.md).
    mean_grads = jax.tree.map(lambda g: g * inverse_count.astype(g.dtype),
                              grads)
    updates, opt_state = optax.with_extra_args_support(optimizer).update(
        mean_grads, opt_state, params, grad_norm=grad_norm)
    return optax.apply_updates(params, updates), opt_state

  params, opt_state = apply_if_finite(
      finite, update, state.params, state.opt_state,
      as_cond=task.model_config.fast_paths.cond_update)
  metrics = dict(sums, grad_norm=grad_norm,
                 nonfinite=1.0 - finite.astype(jnp.float32))
  return state.replace(step=state.step + 1, params=params,
                       opt_state=opt_state), metrics


def apply_if_finite(finite, update, params, opt_state, *, as_cond: bool):
  """update(params, opt_state) -> (params, opt_state) where `finite`, else
  both unchanged.

  as_cond: a lax.cond, which runs the update only when it is kept. On the
  CPU a select of new against old state makes XLA copy the optimizer
  state to update it in place (880 MB a step at BERT-base;
  experiments/performance.md); on a GPU a cond would make the host wait
  for the predicate every step, so there the update is selected.
  """
  if as_cond:
    return jax.lax.cond(finite, update, lambda p, o: (p, o), params,
                        opt_state)
  new = update(params, opt_state)
  return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new,
                      (params, opt_state))


def eval_step(state, batch, *, task, axis_name):
  """Loss/accuracy sums of a batch under the current parameters."""
  sums = task.loss_sums(state.params, batch, None, train=False)
  return jax.lax.psum(sums, axis_name) if axis_name else sums


def predict_step(state, batch, *, task):
  return task.predict(state.params, batch)


@dataclasses.dataclass(frozen=True)
class CompiledSteps:
  """The steps compiled for one `Parallel`; each takes the placed state and
  a sharded batch. `train` (state, batch, rng) -> (state, metric sums) is
  None where only evaluation was asked for."""
  eval: Callable    # (state, batch) -> loss/accuracy sums
  predict: Callable  # (state, batch) -> the task's predictions
  train: Callable | None = None


def compile_steps(dp: parallel.Parallel, task, optimizer=None,
                  grad_accum_steps: int = 1) -> CompiledSteps:
  """The task's steps for `dp`'s devices; with an `optimizer`, the train
  step too (its state donated)."""
  axis = dp.axis_name
  train = None
  if optimizer is not None:
    train = dp.compile(functools.partial(
        train_step, task=task, optimizer=optimizer, axis_name=axis,
        grad_accum_steps=grad_accum_steps),
        num_sharded=1, donate_state=True, returns_state=True)
  return CompiledSteps(
      eval=dp.compile(functools.partial(eval_step, task=task,
                                        axis_name=axis), num_sharded=1),
      predict=dp.compile(functools.partial(predict_step, task=task),
                         num_sharded=1),
      train=train)
