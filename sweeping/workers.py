"""N trials at once on this machine: device slots, the objective, progress.

Each worker is a thread with its own Study object (and sampler) on the
shared storage; it runs one trial at a time through `study.optimize(...,
n_trials=1)`, so Optuna keeps the heartbeat, fails stale trials and calls
the retry callback, exactly as in a plain optimize loop.
"""
import dataclasses
import json
import os
import shutil
import subprocess
import threading
import time

import optuna
from optuna.trial import TrialState

from errors import UserError
from sweeping import study as study_lib
from sweeping import trials as trials_lib

_WAIT_S = 2.0  # between looks at other workers' running trials


# ---------------------------------------------------------------- slots --
@dataclasses.dataclass(frozen=True)
class Slot:
  """The devices of one worker: some GPUs, or some CPU cores."""
  index: int
  gpus: tuple = ()
  cpus: tuple = ()    # empty: the whole machine (one worker)

  def env(self, base: dict) -> dict:
    env = dict(base)
    if self.gpus:
      env['CUDA_VISIBLE_DEVICES'] = ','.join(self.gpus)
    elif self.cpus:
      # XLA's CPU client and Eigen size their thread pools from the machine,
      # not the affinity mask: N trials would each start all-core pools.
      threads = str(len(self.cpus))
      env['XLA_FLAGS'] = ' '.join(filter(None, [
          base.get('XLA_FLAGS', ''), '--xla_cpu_multi_thread_eigen=false',
          f'intra_op_parallelism_threads={threads}']))
      for name in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS',
                   'OPENBLAS_NUM_THREADS'):
        env[name] = threads
    return env


def local_gpus(env: dict) -> list:
  """GPU ids a trial may be given; none when JAX is told to use the CPU."""
  if env.get('JAX_PLATFORMS', '').split(',')[0] == 'cpu':
    return []
  if 'CUDA_VISIBLE_DEVICES' in env:
    return [g for g in env['CUDA_VISIBLE_DEVICES'].split(',') if g.strip()]
  if not shutil.which('nvidia-smi'):
    return []
  listing = subprocess.run(['nvidia-smi', '-L'], capture_output=True,
                           text=True, check=False).stdout
  return [str(i) for i, line in enumerate(listing.splitlines())
          if line.startswith('GPU ')]


def split_devices(workers: int, gpus: list, cpus: list) -> list:
  """Contiguous shares of the GPUs, else of the CPU cores. One worker keeps
  the whole machine; more workers than cores share cores round robin."""
  if workers < 1:
    raise UserError(f'--workers={workers}: expected at least 1')
  if gpus:
    if workers > len(gpus):
      raise UserError(f'--workers={workers} but {len(gpus)} GPU(s) '
                      f'({",".join(gpus)}): at most one worker per GPU')
    return [Slot(i, gpus=tuple(gpus[i::workers])) for i in range(workers)]
  if workers == 1:
    return [Slot(0)]
  if workers >= len(cpus):
    return [Slot(i, cpus=(cpus[i % len(cpus)],)) for i in range(workers)]
  share, extra = divmod(len(cpus), workers)
  slots, start = [], 0
  for i in range(workers):
    size = share + (i < extra)
    slots.append(Slot(i, cpus=tuple(cpus[start:start + size])))
    start += size
  return slots


# ------------------------------------------------------------ objective --
class TrialFailed(Exception):
  """A trial that ended badly; Optuna records it as FAIL and goes on."""


@dataclasses.dataclass
class Sweep:
  """What every worker shares."""
  spec: object            # sweeping.spec.SweepSpec
  config: str             # --config value, with its ':arg'
  overrides: dict         # fixed + command-line fields, for every trial
  workdir: str
  heartbeat: bool         # storage fails dead workers' trials
  stop: threading.Event
  lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


def objective(sweep: Sweep, slot: Slot, trial) -> float:
  """Runs one trial of `sweep` on `slot`; Optuna's objective."""
  if study_lib.over_budget(trial.study, trial, sweep.spec.budget):
    trial.set_user_attr('skipped', True)
    raise TrialFailed('budget already spent by another worker')
  params = study_lib.suggest(trial, sweep.spec)
  # A retry inherits the original's 'workdir' and resumes from its
  # checkpoints there.
  workdir = trial.user_attrs.get('workdir') or os.path.join(
      'trials', str(trial.number))
  trial.set_user_attr('workdir', workdir)
  trial.set_user_attr('interrupted', False)
  path = os.path.join(sweep.workdir, workdir)
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, 'params.json'), 'w', encoding='utf-8') as f:
    json.dump({'trial': trial.number, 'params': params,
               'overrides': sweep.overrides}, f, indent=2)
  command = trials_lib.train_command(sweep.config, path,
                                     {**sweep.overrides, **params})

  reported = set()

  def report(step, value):
    if step not in reported:  # a resumed run may evaluate a step again
      reported.add(step)
      trial.report(value, step)
    return trial.should_prune()

  env = slot.env(dict(os.environ))
  # Trials share shapes (and so most compiled programs): compile once.
  env.setdefault('JAX_COMPILATION_CACHE_DIR',
                 os.path.join(sweep.workdir, 'compile_cache'))
  first = int(os.path.basename(workdir))
  resumes = f' (resumes trial {first})' if first != trial.number else ''
  show(sweep, trial.study,
       f'trial {trial.number}{resumes} started: {_short(params)}')
  outcome = trials_lib.run_trial(
      command, path, sweep.spec.objective, env=env,
      cpus=slot.cpus, report=report, stop_event=sweep.stop)
  return _finish(sweep, trial, outcome)


def _finish(sweep: Sweep, trial, outcome) -> float:
  trial.set_user_attr('step', outcome.step)
  if outcome.values:
    best = min if sweep.spec.direction == 'min' else max
    trial.set_user_attr('best', best(outcome.values.values()))
  trial.set_user_attr('reason', outcome.reason)
  if outcome.state == 'complete':
    return outcome.value
  if outcome.state == 'pruned':
    raise optuna.TrialPruned(outcome.reason)
  trial.set_user_attr('interrupted', outcome.state == 'interrupted')
  raise TrialFailed(outcome.reason)


def retry_interrupted(study, frozen):
  """Optuna callback: queue an interrupted trial again (same workdir)."""
  if frozen.state == TrialState.FAIL and frozen.user_attrs.get('interrupted'):
    study_lib.resume(study, frozen)


# -------------------------------------------------------------- workers --
def work(sweep: Sweep, slot: Slot, make_study):
  """One worker: trials until the budget is spent and nothing is running."""
  study = make_study(slot)
  done = lambda s, t: show(sweep, s, _ended(t))  # noqa: E731
  while not sweep.stop.is_set():
    action = study_lib.next_action(study, sweep.spec.budget, sweep.heartbeat)
    if action == 'done':
      return
    if action == 'wait':  # a running trial elsewhere may die and come back
      sweep.stop.wait(_WAIT_S)
      optuna.storages.fail_stale_trials(study)
      continue
    study.optimize(lambda t: objective(sweep, slot, t), n_trials=1,
                   catch=(TrialFailed,),
                   callbacks=[retry_interrupted, done])


def run_workers(sweep: Sweep, slots: list, make_study):
  threads = [threading.Thread(target=work, args=(sweep, slot, make_study),
                              name=f'worker-{slot.index}', daemon=True)
             for slot in slots]
  for thread in threads:
    thread.start()
  for thread in threads:
    while thread.is_alive():  # join() with a timeout lets signals through
      thread.join(0.5)


# ------------------------------------------------------------- progress --
def progress(spec, study) -> str:
  """'3/8 settings done, 2 running, 1 failed, 0 pruned | best ...'."""
  states = {}
  best, best_number = None, None
  for chain in study_lib.chains(study):
    last = chain[-1]
    states[last.state] = states.get(last.state, 0) + 1
    if last.state == TrialState.COMPLETE and (
        best is None or spec.better(last.value, best.value)):
      best, best_number = last, chain[0].number
  line = (f'{states.get(TrialState.COMPLETE, 0)}/{spec.budget} done, '
          f'{states.get(TrialState.RUNNING, 0)} running, '
          f'{states.get(TrialState.FAIL, 0)} failed, '
          f'{states.get(TrialState.PRUNED, 0)} pruned')
  if states.get(TrialState.WAITING):
    line += f', {states[TrialState.WAITING]} to resume'
  if best is not None:
    line += (f' | best {spec.objective} {best.value:.4g} '
             f'(trial {best_number}: {_short(best.params)})')
  return line


def show(sweep: Sweep, study, event: str):
  with sweep.lock:
    print(f'[sweep {time.strftime("%H:%M:%S")}] {event} | '
          f'{progress(sweep.spec, study)}', flush=True)


def _ended(trial) -> str:
  state = trial.state.name.lower()
  if trial.user_attrs.get('interrupted'):
    state = 'interrupted (resumes on the next run)'
  reason = trial.user_attrs.get('reason')
  if trial.user_attrs.get('skipped'):
    return f'trial {trial.number} not run: budget spent'
  value = f' {trial.value:.4g}' if trial.value is not None else ''
  if reason and trial.state != TrialState.COMPLETE:
    value += f' ({reason})'
  return f'trial {trial.number} {state}{value}'


def _short(params: dict) -> str:
  return ', '.join(
      f'{name.split(".")[-1]}={v:.4g}' if isinstance(v, float) else
      f'{name.split(".")[-1]}={v}' for name, v in params.items())
