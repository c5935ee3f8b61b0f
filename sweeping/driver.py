"""One sweep, start to end: the storage, the study, the workers on this
machine, the report. sweep.py reads its flags and calls `run_sweep`.

Every check happens before the workdir or the study exists: the spec, the
sampler and pruner, the worker slots, and (with --storage) the URL.
"""
import dataclasses
import os
import signal
import threading

import optuna

from errors import UserError
from sweeping import report as report_lib
from sweeping import spec as spec_lib
from sweeping import study as study_lib
from sweeping import workers as workers_lib


@dataclasses.dataclass(frozen=True)
class SweepRequest:
  """What sweep.py's flags ask for."""
  spec: spec_lib.SweepSpec
  config: object          # the loaded config (task, num_train_steps)
  config_text: str        # --config as given: 'path[:arg]'
  overrides: dict         # the spec's fixed fields and --config.x=y
  workdir: str            # absolute
  workers: int = 1
  storage_url: str = ''   # '' -> sqlite:///WORKDIR/study.db
  study_name: str = ''    # '' -> the workdir's name
  heartbeat_s: int = 30

  @property
  def name(self) -> str:
    return self.study_name or os.path.basename(self.workdir)


def checked_pruner_and_slots(request: SweepRequest):
  """(pruner, worker slots): the checks that need no study."""
  try:
    study_lib.make_sampler(request.spec)
    pruner = study_lib.make_pruner(request.spec,
                                   request.config.num_train_steps)
  except spec_lib.SpecError as e:
    raise UserError(f'sweep spec: {e}') from e
  slots = workers_lib.split_devices(
      request.workers, workers_lib.local_gpus(dict(os.environ)),
      sorted(os.sched_getaffinity(0)))
  return pruner, slots


def run_sweep(request: SweepRequest) -> bool:
  """Runs the sweep to its budget (or until SIGINT/SIGTERM) and writes its
  report; whether a signal stopped it."""
  spec, workdir, name = request.spec, request.workdir, request.name
  pruner, slots = checked_pruner_and_slots(request)
  fingerprint = '\n'.join([request.config_text,
                           repr(sorted(request.overrides.items())),
                           spec.fingerprint()])
  if request.storage_url:  # a bad URL fails before the workdir exists
    storage = open_storage(request)
    make_workdir(workdir)
  else:
    make_workdir(workdir)
    storage = open_storage(request)
  study_lib.open_study(storage, name, spec, fingerprint,
                       study_lib.make_sampler(spec), pruner)
  # Trials run in the repository root: give them the file's absolute path.
  path, colon, arg = request.config_text.partition(':')
  running = workers_lib.Sweep(spec, os.path.abspath(path) + colon + arg,
                              request.overrides, workdir,
                              study_lib.has_heartbeat(storage),
                              threading.Event())
  for signum in (signal.SIGINT, signal.SIGTERM):  # trials checkpoint, stop
    signal.signal(signum, lambda *_: running.stop.set())

  def make_study(slot):
    salt = f'{os.uname().nodename}/{os.getpid()}/{slot.index}'
    return optuna.load_study(
        study_name=name, storage=storage,
        sampler=study_lib.make_sampler(spec, salt),
        pruner=study_lib.make_pruner(spec, request.config.num_train_steps))

  print(f'sweep {name!r}: {spec.budget} settings of {", ".join(spec.fields)}'
        f' ({spec.sampler} sampler, {spec.pruner} pruner) on '
        f'{len(slots)} worker(s): ' + '; '.join(
            f'GPUs {",".join(s.gpus)}' if s.gpus else
            f'CPUs {",".join(map(str, s.cpus))}' if s.cpus else 'all devices'
            for s in slots), flush=True)
  workers_lib.run_workers(running, slots, make_study)
  write_report(request, storage)
  return running.stop.is_set()


def make_workdir(workdir: str):
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f'--workdir={workdir} cannot be made: '
                    + ('it is a file' if os.path.isfile(workdir) else
                       str(e.strerror or e))) from e


def open_storage(request: SweepRequest):
  url = request.storage_url or (
      f'sqlite:///{os.path.join(request.workdir, "study.db")}')
  return study_lib.open_storage(url, request.heartbeat_s)  # UserError if bad


def write_report(request: SweepRequest, storage=None):
  """Writes the report of the study as it is now (UserError if there is
  no study)."""
  workdir, name = request.workdir, request.name
  if storage is None:
    if not request.storage_url and not os.path.exists(
        os.path.join(workdir, 'study.db')):
      raise UserError(f'no study in {workdir} (no study.db)')
    storage = open_storage(request)
  try:
    study = optuna.load_study(study_name=name, storage=storage)
  except KeyError:
    raise UserError(f'no study named {name!r} in the storage') from None
  path = report_lib.write_report(request.spec, study, workdir,
                                 f'Sweep {name}: {request.config.task}')
  print(f'report: {path} | {workers_lib.progress(request.spec, study)}',
        flush=True)
