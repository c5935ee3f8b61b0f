"""The training loop: `train_and_evaluate(config, workdir)` trains any
experiment of configs/ on all devices, resuming from the workdir's newest
checkpoint, with evaluations, logs and checkpoints on the way.

The steps it runs are pure (training/steps.py); this module does the I/O.
Bad input raises errors.UserError before anything is written; a
non-finite step raises Diverged; anything else is a bug.
"""
import dataclasses
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from configs import base_config
from errors import UserError
from input_data import batching
from tasks import get_task
from training import checkpointing, optimizers, parallel, pretrained
from training import progress as progress_lib
from training import run_config, stop_signals, workdir_lock
from training.evaluator import Evaluator, mean_metrics
from training.io_errors import io_error_line, workdir_unusable
from training.metrics_writer import MetricsWriter
from training.steps import TrainState, compile_steps

MAX_STEPS_IN_FLIGHT = 2  # dispatched ahead of the device (see TrainLoop.run)


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
        params, config.init_from, report=log))
  return TrainState(step=jnp.array(0, jnp.int32), params=params,
                    opt_state=dp.init(optimizer.init, params))


def log(message: str):
  if jax.process_index() == 0:
    print(message, flush=True)


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
  base_config.validate(config, config.num_devices or jax.device_count())
  task = get_task(config)
  dp = parallel.for_config(config, task)
  dp.check_batch_size(config.batch_size, 'batch_size')
  dp.check_batch_size(config.eval_batch_size, 'eval_batch_size')
  if batching.host_batch_size(config.batch_size) % config.grad_accum_steps:
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
    self.steps = compile_steps(dp, task, optimizer, config.grad_accum_steps)
    self.evaluator = Evaluator(config, task, dp, self.steps)
    self.pending = []  # per-step metrics on device, fetched when logging
    self.pending_from = 0  # the step number of pending[0]

  def run(self, state, train_iter, start: int, stop: int) -> TrainResult:
    config, total = self.config, self.config.num_train_steps
    rng = jax.random.key(config.seed + 1)
    progress = progress_lib.Progress(config, self.task,
                                     self.dp.num_devices, start)
    train_metrics, eval_metrics = {}, {}
    self.pending_from = start + 1
    done = start
    for step in range(start, stop):
      batch = self.dp.shard(next(train_iter))
      state, step_metrics = self.steps.train(state, batch, rng)
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
        eval_metrics = self.evaluator.evaluate(state)
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
      eval_metrics.update(self.evaluator.evaluate_averaged(
          state, self.checkpointer, log))
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
      line += f' | loss {out["train/loss"]:.4f}'
      if 'train/accuracy' in out:  # not for a regression
        line += f' | acc {out["train/accuracy"]:.4f}'
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
