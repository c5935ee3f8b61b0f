r"""Trains and evaluates any experiment of configs/ on all devices.

  python train.py --config=configs/default.py --workdir=/tmp/reverse \
      --config.model.num_layers=3

Running the same command again resumes from the newest checkpoint in the
workdir. Several hosts: start one process per host with
--coordinator_address, --num_processes and --process_id (jax.distributed).
This is the only module that jits and loops; steps are pure functions.
"""
import dataclasses
import functools
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import flax
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
import optax

from input_data import pipelines
from tasks import get_task
from training import checkpointing, metrics, optimizers, parallel, pretrained
from training.metrics_writer import MetricsWriter

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, logs, metrics.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'host:port of process 0 (multi-host).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', 1, 'Hosts in the run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', 0, 'This host, 0-based.')
_TRACEBACK = flags.DEFINE_bool('show_traceback', False,
                               'Show full tracebacks for input errors.')


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: dict
  opt_state: optax.OptState


@dataclasses.dataclass
class TrainResult:
  """What a run ends with: the last metrics of each kind and the state."""
  train_metrics: dict
  eval_metrics: dict
  state: TrainState  # on the host, one copy


# ---------------------------------------------------------------- steps --
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
  grads = jax.tree.map(lambda g: g / jnp.maximum(sums['weight'], 1.0), grads)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = dict(sums, grad_norm=optax.tree.norm(grads))
  return state.replace(step=state.step + 1, params=params,
                       opt_state=opt_state), metrics


def eval_step(state, batch, *, task, axis_name):
  """Loss/accuracy sums of a batch under the current parameters."""
  sums = task.loss_sums(state.params, batch, None, train=False)
  return jax.lax.psum(sums, axis_name) if axis_name else sums


def predict_step(state, batch, *, task):
  return task.predict(state.params, batch)


# ---------------------------------------------------------------- setup --
def check_workdir(workdir: str):
  """Fails with one line if the workdir cannot be created or written."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f'.write_test_{jax.process_index()}')
    with open(probe, 'w', encoding='utf-8') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise ValueError(f'--workdir={workdir} cannot be written: '
                     f'{e.strerror or e}') from None


def initial_state(task, optimizer, config) -> TrainState:
  """Fresh parameters from the seed (identical on every host)."""
  variables = jax.jit(task.init_variables)(jax.random.key(config.seed))
  params = variables['params']
  if config.init_from:
    params = pretrained.restore_pretrained(params, config.init_from)
  return TrainState(step=jnp.array(0, jnp.int32), params=params,
                    opt_state=optimizer.init(params))


def mean_metrics(sums: dict, prefix: str) -> dict:
  """Sums from the steps -> means, named for the writers.

  Every sum is divided by 'weight' (the loss's token count), except
  'X_correct' with an 'X_examples' count, which becomes 'X_accuracy'.
  """
  weight = max(float(sums['weight']), 1.0)
  out = {f'{prefix}/accuracy': float(sums['correct']) / weight}
  for name, value in sums.items():
    if name in ('weight', 'correct') or name.endswith('_examples'):
      continue
    head = name[:-len('_correct')]
    if name.endswith('_correct') and f'{head}_examples' in sums:
      count = max(float(sums[f'{head}_examples']), 1.0)
      out[f'{prefix}/{head}_accuracy'] = float(value) / count
    else:
      out[f'{prefix}/{name}'] = float(value) / weight
  return out


def log(message: str):
  if jax.process_index() == 0:
    print(message, flush=True)


# ------------------------------------------------------------ evaluation --
def evaluate(config, task, dp, state, eval_batches, compiled):
  """Loss and token accuracy over the whole eval set, then decoded-sequence
  metrics from beam search, merged over hosts."""
  totals = None
  for batch in eval_batches:
    sums = dp.reduced(compiled['eval'](state, dp.shard(batch)))
    totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
  results = mean_metrics(totals, 'eval')
  results['eval/perplexity'] = metrics.perplexity(totals['loss'],
                                                  totals['weight'])
  if config.decode.beam_size > 0:
    outputs = [dp.to_host(compiled['predict'](state, dp.shard(b)))
               for b in eval_batches]
    sums = parallel.sum_over_hosts(task.score(outputs, eval_batches))
    results.update({f'eval/{name}': value for name, value in
                    task.metrics_from_sums(sums).items()})
  return results


def evaluate_averaged(config, task, dp, state, checkpointer, eval_batches,
                      compiled):
  """Evaluates the mean parameters of the last N checkpoints ('averaged/')."""
  steps = sorted(checkpointer.all_steps())[-config.average_last_checkpoints:]
  host_state = dp.global_replicated(state)
  abstract = checkpointing.abstract_like(host_state, dp.replicated)
  params = checkpointer.average_params(steps, abstract)
  averaged = dp.replicate(host_state.replace(params=params))
  metrics = evaluate(config, task, dp, averaged, eval_batches, compiled)
  log(f'eval of the mean of checkpoints {steps}: ' + ', '.join(
      f'{k[5:]} {v:.4f}' for k, v in sorted(metrics.items())))
  return {k.replace('eval/', 'averaged/'): v for k, v in metrics.items()}


def check_averaging(config):
  """Fails before training if the run cannot end with the N checkpoints
  that config.average_last_checkpoints asks to average."""
  wanted = config.average_last_checkpoints
  if wanted <= 1:
    return
  total, every = config.num_train_steps, config.checkpoint_every
  saved = total // every + (1 if total % every else 0)
  if wanted > min(saved, config.keep_checkpoints):
    raise ValueError(
        f'config.average_last_checkpoints={wanted} but the run keeps '
        f'{min(saved, config.keep_checkpoints)} checkpoints '
        f'(config.keep_checkpoints={config.keep_checkpoints}, one every '
        f'config.checkpoint_every={every} of {total} steps)')


# ------------------------------------------------------------ main loop --
def train_and_evaluate(config, workdir: str,
                       stop_at_step: int | None = None) -> TrainResult:
  """Trains `config` in `workdir`, resuming from its newest checkpoint.

  `stop_at_step` ends the run early with a checkpoint, as a preempted or
  time-limited job would; running again continues to num_train_steps.
  """
  check_workdir(workdir)
  check_averaging(config)
  task = get_task(config)
  dp = parallel.make_parallel(config.parallelism, config.num_devices)
  dp.check_batch_size(config.batch_size, 'batch_size')
  dp.check_batch_size(config.eval_batch_size, 'eval_batch_size')
  if pipelines.host_batch_size(config.batch_size) % config.grad_accum_steps:
    raise ValueError(f'config.batch_size={config.batch_size} does not split '
                     f'into config.grad_accum_steps={config.grad_accum_steps}'
                     ' microbatches on every device')
  optimizer, schedule = optimizers.make_optimizer(config.optimizer,
                                                  config.num_train_steps)
  state = initial_state(task, optimizer, config)
  train_iter = task.train_batches(workdir, config.batch_size)
  eval_batches = task.eval_batches(config.eval_batch_size)

  checkpointer = checkpointing.Checkpointer(
      workdir, config.keep_checkpoints)
  latest = checkpointer.latest_step()
  if latest is not None:
    abstract = checkpointing.abstract_like(state, dp.replicated)
    state, data_state = checkpointer.restore(latest, abstract)
    train_iter.set_state(data_state)
    log(f'resumed from step {latest} in {checkpointer.directory}')
  state = dp.replicate(state)

  axis = dp.axis_name
  compiled = {
      'train': dp.compile(functools.partial(
          train_step, task=task, optimizer=optimizer, axis_name=axis,
          grad_accum_steps=config.grad_accum_steps),
          num_sharded=1, donate_state=True),
      'eval': dp.compile(functools.partial(eval_step, task=task,
                                           axis_name=axis), num_sharded=1),
      'predict': dp.compile(functools.partial(predict_step, task=task),
                            num_sharded=1),
  }
  writer = MetricsWriter(workdir)
  rng = jax.random.key(config.seed + 1)
  start = int(latest or 0)
  total = config.num_train_steps
  train_metrics, eval_metrics, pending = {}, {}, []
  window_start, window_step = time.time(), start
  stop = min(total, stop_at_step or total)
  for step in range(start, stop):
    batch = dp.shard(next(train_iter))
    state, metrics = compiled['train'](state, batch, rng)
    pending.append(metrics)  # fetched every log_every steps: no host sync
    done = step + 1
    if done % config.log_every == 0 or done == total:
      sums = jax.tree.map(lambda *x: np.sum(x), *dp.reduced(pending))
      grad_norm = float(sums.pop('grad_norm')) / len(pending)
      train_metrics = mean_metrics(sums, 'train')
      train_metrics['train/grad_norm'] = grad_norm
      train_metrics['train/learning_rate'] = float(schedule(step))
      steps_per_s = (done - window_step) / (time.time() - window_start)
      train_metrics['train/steps_per_second'] = steps_per_s
      writer.write(done, train_metrics)
      left = (total - done) / max(steps_per_s, 1e-9)
      log(f'step {done}/{total} | loss {train_metrics["train/loss"]:.4f} | '
          f'acc {train_metrics["train/accuracy"]:.4f} | {steps_per_s:.2f} '
          f'steps/s | {time.strftime("%H:%M:%S", time.gmtime(left))} left')
      pending, window_start, window_step = [], time.time(), done
    if done % config.eval_every == 0 or done == total:
      eval_metrics = evaluate(config, task, dp, state, eval_batches, compiled)
      writer.write(done, eval_metrics)
      log(f'eval at step {done}: ' + ', '.join(
          f'{k[5:]} {v:.4f}' for k, v in sorted(eval_metrics.items())))
    if done in (total, stop) or done % config.checkpoint_every == 0:
      checkpointer.save(done, dp.global_replicated(state),
                        train_iter.get_state())
  checkpointer.wait()
  if config.average_last_checkpoints > 1 and stop == total:
    eval_metrics.update(evaluate_averaged(config, task, dp, state, checkpointer,
                                          eval_batches, compiled))
    writer.write(total, eval_metrics)
  checkpointer.close()
  writer.close()
  host_state = jax.tree.map(parallel.host_copy, dp.global_replicated(state))
  return TrainResult(train_metrics, eval_metrics, host_state)


def main(argv):
  logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if _COORDINATOR.value:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                               _PROCESS_ID.value)
  if _CONFIG.value is None or _WORKDIR.value is None:
    raise app.UsageError('--config and --workdir are required')
  try:
    result = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except ValueError as e:  # bad input: one line, unless asked for more
    if _TRACEBACK.value:
      raise
    sys.exit(f'error: {e}')
  if result.eval_metrics:
    log('final: ' + ', '.join(f'{k} {v:.4f}' for k, v in
                              sorted(result.eval_metrics.items())))


def parse_flags(argv):
  """absl flag parsing, with bad --config.* overrides reported in one line.

  config_flags raises plain KeyError/AttributeError for an unknown field
  (and ValueError/TypeError for a bad value) during parsing.
  """
  try:
    return flags.FLAGS(argv)
  except (KeyError, AttributeError) as e:
    sys.exit(f'error: unknown config field: {_one_line(e)}')
  except (flags.Error, ValueError, TypeError) as e:
    sys.exit(f'error: bad command-line flag: {_one_line(e)}')


def _one_line(error) -> str:
  text = str(error).replace('\\n', ' ').replace('\\', '').replace("'", '')
  return ' '.join(text.split())

if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
