r"""Trains and evaluates any experiment of configs/ on all devices.

  python train.py --config=configs/default.py --workdir=/tmp/reverse \
      --config.model.num_layers=3

Running the same command again resumes from the newest checkpoint in the
workdir. Several hosts: start one process per host with
--coordinator_address, --num_processes and --process_id (jax.distributed).
This is the only module that jits and loops; steps are pure functions.

Exit codes:
  0   finished (or the workdir was already trained to num_train_steps);
  1   bad input: one line `error: ...` on stderr (a traceback only with
      --show_traceback), and nothing in the workdir is changed or lost;
  3   diverged: `error: non-finite <quantity> at step N ...`; that update
      was not applied and no checkpoint holds it;
  75  stopped by SIGTERM or SIGINT after a durable checkpoint: the same
      command continues. A second signal ends the process at once.
"""
import dataclasses
import errno
import functools
import os
import shutil
import sys

from absl import app
from absl import flags
from absl import logging
import flax
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
import optax

from configs import base_config
from errors import UserError
from input_data import pipelines
from tasks import get_task
from training import checkpointing, metrics, optimizers, parallel, pretrained
from training import progress as progress_lib
from training import run_config, stop_signals, workdir_lock
from training.exit_codes import EXIT_DIVERGED, EXIT_ERROR, EXIT_STOPPED
from training.metrics_writer import MetricsWriter

MAX_STEPS_IN_FLIGHT = 2  # dispatched ahead of the device (see TrainLoop.run)

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
  stopped_by: str | None = None  # 'SIGTERM'/'SIGINT': stopped, resumable


class Diverged(Exception):
  """A step's loss or gradient norm was not finite (its update was not
  applied); raised unless config.skip_nonfinite_updates."""

  def __init__(self, step: int, quantity: str, loss: float, grad_norm: float):
    super().__init__(
        f'non-finite {quantity} at step {step} (loss {loss:.4g}, gradient '
        f'norm {grad_norm:.4g}); that update was not applied and no '
        'checkpoint holds it; --config.skip_nonfinite_updates=True skips '
        'such steps instead')
    self.step, self.quantity = step, quantity


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
      as_cond=jax.default_backend() == 'cpu')
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
    reason = ('it is a file, not a directory' if os.path.isfile(workdir)
              else e.strerror or e)
    raise UserError(f'--workdir={workdir} cannot be written: {reason}'
                    ) from None


def validate_config(config, num_devices: int):
  """base_config.validate, each of whose ValueErrors names a bad config
  value: raised as UserError, so that the command line prints it in one
  line (validate may raise plain ValueError; a UserError passes as is)."""
  try:
    base_config.validate(config, num_devices)
  except UserError:
    raise
  except ValueError as e:
    raise UserError(str(e)) from e


def remove_unused_workdir(workdir: str):
  """Removes a workdir that this run found empty or absent, after bad input
  that shows only once the run is set up (its data, its tokenizer) and
  before any step: a failed first run leaves nothing behind."""
  shutil.rmtree(workdir, ignore_errors=True)


def initial_state(task, optimizer, config, dp) -> TrainState:
  """Fresh parameters from the seed (identical on every host), in `dp`'s
  checkpoint form: on a mesh each device initialises only its shards."""
  params = dp.init(lambda rng: task.init_variables(rng)['params'],
                   jax.random.key(config.seed))
  if config.init_from:
    params = dp.init(lambda p: p, pretrained.restore_pretrained(
        params, config.init_from, config.task))
  return TrainState(step=jnp.array(0, jnp.int32), params=params,
                    opt_state=dp.init(optimizer.init, params))


def make_parallel(config, task, mode: str | None = None) -> parallel.Parallel:
  """The devices of `config.parallelism` (or `mode`): pmap, or a mesh of
  config.mesh laid out by config.logical_axis_rules and the task's
  parameter axes."""
  num_devices = config.num_devices or jax.device_count()
  return parallel.make_parallel(
      mode or config.parallelism, config.num_devices,
      mesh_shape=base_config.mesh_shape(config.mesh, num_devices),
      rules=config.logical_axis_rules, param_axes=task.param_axes())


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
  host_state = dp.global_state(state)
  params = checkpointer.average_params(steps, dp.abstract_state(host_state))
  averaged = dp.place_state(host_state.replace(params=params))
  metrics = evaluate(config, task, dp, averaged, eval_batches, compiled)
  log(f'eval of the mean of checkpoints {steps}: ' + ', '.join(
      f'{k[5:]} {v:.4f}' for k, v in sorted(metrics.items())))
  return {k.replace('eval/', 'averaged/'): v for k, v in metrics.items()}


# ------------------------------------------------------------ main loop --
def train_and_evaluate(config, workdir: str,
                       stop_at_step: int | None = None) -> TrainResult:
  """Trains `config` in `workdir`, resuming from its newest checkpoint.

  `stop_at_step` ends the run early with a checkpoint, as a preempted or
  time-limited job would; running again continues to num_train_steps.
  SIGTERM/SIGINT do the same at the current step (`stopped_by` is set).
  Raises UserError (bad input, one line) before anything is written, a
  full disk or an unwritable workdir as UserError too, and Diverged at a
  non-finite step; any other exception is a bug.
  """
  validate_config(config, config.num_devices or jax.device_count())
  task = get_task(config)
  dp = make_parallel(config, task)
  dp.check_batch_size(config.batch_size, 'batch_size')
  dp.check_batch_size(config.eval_batch_size, 'eval_batch_size')
  if pipelines.host_batch_size(config.batch_size) % config.grad_accum_steps:
    raise UserError(f'config.batch_size={config.batch_size} does not split '
                    f'into config.grad_accum_steps={config.grad_accum_steps}'
                    ' microbatches on every device')
  if config.init_from:
    task.check_init_from(workdir)
  task.check_positions()
  fresh = not os.path.isdir(workdir) or not os.listdir(workdir)
  check_workdir(workdir)
  started = []  # _train appends once the steps begin
  try:
    try:
      with workdir_lock.hold(workdir, jax.process_index(), log), \
          stop_signals.StopSignals() as signals:
        return _train(config, workdir, task, dp, stop_at_step, signals,
                      started)
    except (OSError, checkpointing.CheckpointSaveError) as e:
      if not workdir_unusable(e):
        raise  # a bug, or a save that failed for another reason
      raise UserError(io_error_line(workdir, e)) from e
  except workdir_lock.WorkdirLocked:
    raise  # another run's workdir: not ours to tidy
  except UserError:
    if fresh and not started:  # bad data or tokenizer, found at setup
      remove_unused_workdir(workdir)
    raise


def _train(config, workdir, task, dp, stop_at_step, signals,
           started: list) -> TrainResult:
  """The run itself, inside the workdir's lock and the signal handlers."""
  optimizer, schedule = optimizers.make_optimizer(config.optimizer,
                                                  config.num_train_steps)
  checkpointer = checkpointing.Checkpointer(
      workdir, config.keep_checkpoints, config.checkpoint_timeout_s, log)
  try:
    state = initial_state(task, optimizer, config, dp)
    abstract = dp.abstract_state(state)
    if checkpointer.all_steps():  # a resume: the same model and config
      run_config.check_task(workdir, config)
      checkpointer.check_newest_shapes(abstract)  # names the parameter
      run_config.check_resume(workdir, config, base_config.base_config())
    if jax.process_index() == 0:
      run_config.save(config, workdir)
    train_iter = task.train_batches(workdir, config.batch_size)
    restored = checkpointer.restore_newest(abstract)
    start = 0
    if restored:
      start, state, data_state = restored
      train_iter.set_state(data_state)
      log(f'resumed from step {start} in {checkpointer.directory}')
    stop = min(config.num_train_steps, stop_at_step or config.num_train_steps)
    if start >= stop:
      log(f'{workdir} is already trained to step {start}: nothing to do')
      return TrainResult({}, {}, jax.tree.map(parallel.host_copy, state))
    loop = TrainLoop(config, task, dp, optimizer, schedule, checkpointer,
                     MetricsWriter(workdir, start_step=start), signals)
    started.append(start)
    try:
      return loop.run(dp.place_state(state), train_iter, start, stop)
    finally:
      loop.writer.close()
  finally:
    checkpointer.close()


class TrainLoop:
  """Steps, logs, evaluations and checkpoints from `start` to `stop`."""

  def __init__(self, config, task, dp, optimizer, schedule, checkpointer,
               writer, signals):
    self.config, self.task, self.dp = config, task, dp
    self.schedule, self.checkpointer, self.writer = (schedule, checkpointer,
                                                     writer)
    self.signals = signals
    axis = dp.axis_name
    self.compiled = {
        'train': dp.compile(functools.partial(
            train_step, task=task, optimizer=optimizer, axis_name=axis,
            grad_accum_steps=config.grad_accum_steps),
            num_sharded=1, donate_state=True, returns_state=True),
        'eval': dp.compile(functools.partial(eval_step, task=task,
                                             axis_name=axis), num_sharded=1),
        'predict': dp.compile(functools.partial(predict_step, task=task),
                              num_sharded=1),
    }
    self.eval_batches = task.eval_batches(config.eval_batch_size)
    self.pending = []  # per-step metrics on device, fetched when logging
    self.pending_from = 0  # the step number of pending[0]

  def run(self, state, train_iter, start: int, stop: int) -> TrainResult:
    config, total = self.config, self.config.num_train_steps
    rng = jax.random.key(config.seed + 1)
    progress = progress_lib.Progress(config, self.task.model_config,
                                     self.dp.num_devices, start)
    train_metrics, eval_metrics = {}, {}
    self.pending_from = start + 1
    done = start
    for step in range(start, stop):
      batch = self.dp.shard(next(train_iter))
      state, step_metrics = self.compiled['train'](state, batch, rng)
      self.pending.append(step_metrics)  # no host sync until logged...
      if len(self.pending) > MAX_STEPS_IN_FLIGHT:
        # ...but at most this many steps queued ahead of the device, so a
        # SIGTERM stops within a few steps (a preemption's grace period),
        # not after a whole log window of queued work.
        jax.block_until_ready(self.pending[-MAX_STEPS_IN_FLIGHT - 1])
      done = step + 1
      self.checkpointer.poll()  # a failed background save surfaces here
      stopping = stop_requested(self.signals)
      ending = stopping or done in (total, stop)
      if done % config.log_every == 0 or ending:
        train_metrics = self.log_window(done, progress)
      elif progress.step_done(done, lambda: jax.block_until_ready(
          step_metrics)):
        log(f'step {done}/{total} | {progress.describe(done)}')
      if done % config.eval_every == 0 or done == total:
        eval_metrics = evaluate(config, self.task, self.dp, state,
                                self.eval_batches, self.compiled)
        self.writer.write(done, eval_metrics)
        log(f'eval at step {done}: ' + ', '.join(
            f'{k[5:]} {v:.4f}' for k, v in sorted(eval_metrics.items())))
      if ending or done % config.checkpoint_every == 0:
        self.check_finite()  # never save past a diverged step
        self.checkpointer.save(done, self.dp.global_state(state),
                               train_iter.get_state())
      if stopping:
        break
    self.checkpointer.wait()
    if stopping:
      return TrainResult(train_metrics, eval_metrics, self.host(state),
                         self.signals.received or 'a signal to another host')
    if config.average_last_checkpoints > 1 and stop == total:
      eval_metrics.update(evaluate_averaged(
          config, self.task, self.dp, state, self.checkpointer,
          self.eval_batches, self.compiled))
      self.writer.write(total, eval_metrics)
    return TrainResult(train_metrics, eval_metrics, self.host(state))

  def host(self, state):
    return jax.tree.map(parallel.host_copy, self.dp.global_state(state))

  def fetch(self) -> list[dict]:
    """The pending steps' metrics on the host, oldest first."""
    return [self.dp.reduced(m) for m in self.pending]

  def check_finite(self):
    """Raises Diverged at the first non-finite pending step (unless such
    steps are skipped)."""
    if self.config.skip_nonfinite_updates:
      return
    for i, m in enumerate(self.fetch()):
      if m['nonfinite']:
        quantity = 'loss' if not np.isfinite(m['loss']) else 'gradient norm'
        raise Diverged(self.pending_from + i, quantity,
                       float(m['loss']) / max(float(m['weight']), 1.0),
                       float(m['grad_norm']))

  def log_window(self, done: int, progress) -> dict:
    """Writes and prints the means of the pending steps' metrics."""
    self.check_finite()
    per_step = self.fetch()
    finite = [m for m in per_step if not m['nonfinite']]
    for i, m in enumerate(per_step):
      if m['nonfinite']:
        log(f'step {self.pending_from + i}: non-finite loss or gradient '
            'norm, update skipped')
    self.pending, self.pending_from = [], done + 1
    steps_per_s, speed = progress.steps_per_second(done), progress.describe(
        done)
    out = {'train/learning_rate': float(self.schedule(done - 1)),
           'train/steps_per_second': steps_per_s or 0.0}
    if self.config.skip_nonfinite_updates:
      out['train/skipped_updates'] = float(len(per_step) - len(finite))
    line = f'step {done}/{self.config.num_train_steps}'
    if finite:
      sums = jax.tree.map(lambda *x: np.sum(x), *finite)
      sums.pop('nonfinite')
      grad_norm = float(sums.pop('grad_norm')) / len(finite)
      out.update(mean_metrics(sums, 'train'), **{'train/grad_norm': grad_norm})
      line += (f' | loss {out["train/loss"]:.4f} | '
               f'acc {out["train/accuracy"]:.4f}')
    if len(finite) < len(per_step):
      line += f' | {len(per_step) - len(finite)} skipped'
    self.writer.write(done, out)
    log(f'{line} | {speed}')
    progress.restart(done)
    return out


def stop_requested(signals) -> bool:
  """Whether any host received SIGTERM/SIGINT: all must stop at one step
  because saving a checkpoint is collective."""
  if jax.process_count() == 1:
    return signals.requested
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  flags_ = multihost_utils.process_allgather(np.int32(signals.requested))
  return bool(np.any(flags_))


# OSErrors that say the workdir's disk or permissions, not the program,
# are at fault: the user's to fix, so reported in one line.
_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def _error_chain(error: BaseException) -> list[BaseException]:
  chain, e = [], error
  while e is not None:
    chain.append(e)
    e = e.__cause__ or e.__context__
  return chain


def disk_full(error: BaseException) -> bool:
  return any(getattr(e, 'errno', None) in _FULL or
             'No space left on device' in str(e) for e in _error_chain(error))


def workdir_unusable(error: BaseException) -> bool:
  """Whether a failed read or write (or checkpoint save) came from a full
  disk or a denied write: bad input, unlike any other failure."""
  return disk_full(error) or any(getattr(e, 'errno', None) in _DENIED
                                 for e in _error_chain(error))


def io_error_line(workdir: str, error: BaseException) -> str:
  """One line for a failed read or write, with the free space when the
  disk is full (the case that used to print 349 lines)."""
  if disk_full(error):
    try:
      free = f'{shutil.disk_usage(workdir).free / 2**20:,.1f} MiB free'
    except OSError:
      free = 'free space unknown'
    return (f'--workdir={workdir} is out of space ({free}): '
            f'{checkpointing.first_line(error)}')
  if isinstance(error, OSError):
    return (f'{error.filename or workdir} cannot be read or written: '
            f'{error.strerror or error}')
  return str(error)


def main(argv):
  logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes
  if not _TRACEBACK.value:  # a failed save is reported in one line
    checkpointing.quiet_orbax_errors()
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
  except UserError as e:  # bad input: one line, unless asked for more
    if _TRACEBACK.value:
      raise
    _exit(EXIT_ERROR, f'error: {e}')
  except Diverged as e:
    _exit(EXIT_DIVERGED, f'error: {e}')
  except KeyboardInterrupt:  # Ctrl-C before the handlers were installed
    _exit(EXIT_ERROR, 'error: interrupted before training started')
  if result.stopped_by:
    _exit(EXIT_STOPPED, f'stopped by {result.stopped_by} at step '
          f'{int(result.state.step)}, checkpoint saved; run the same command '
          'to continue')
  if result.eval_metrics:
    log('final: ' + ', '.join(f'{k} {v:.4f}' for k, v in
                              sorted(result.eval_metrics.items())))


def _exit(code: int, line: str):
  print(line, file=sys.stderr, flush=True)
  sys.exit(code)


def parse_flags(argv):
  """absl flag parsing, with bad --config.* overrides and config files that
  cannot be loaded reported in one line.

  config_flags raises plain KeyError/AttributeError for an unknown field
  (and ValueError/TypeError for a bad value) during parsing; a missing
  config file or one with a syntax error raises OSError/SyntaxError, some
  only when the config is first read.
  """
  try:
    rest = flags.FLAGS(argv)
    if _CONFIG.value is not None:
      _CONFIG.value.keys()  # a config that failed to load raises here
    return rest
  except (KeyError, AttributeError) as e:
    sys.exit(f'error: unknown config field: {_one_line(e)}')
  except SyntaxError as e:
    sys.exit(f'error: --config file {e.filename} line {e.lineno}: {e.msg}')
  except OSError as e:
    sys.exit('error: --config file cannot be read: '
             f'{str(e).splitlines()[-1].strip()}')
  except (flags.Error, ValueError, TypeError) as e:
    sys.exit(f'error: bad command-line flag: {_last_line(e)}')


def _one_line(error) -> str:
  text = str(error).replace('\\n', ' ').replace('\\', '').replace("'", '')
  return ' '.join(text.split())


def _last_line(error) -> str:
  """The message itself when config_flags wraps a whole traceback: its last
  line, prefixed by the flag when that is where it came from."""
  lines = [l.strip() for l in str(error).splitlines() if l.strip()]
  if len(lines) <= 1:
    return _one_line(error)
  cause = error.__cause__
  while cause is not None and cause.__cause__ is not None:
    cause = cause.__cause__
  return _one_line(f'{lines[0]} {cause or lines[-1]}')

if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
