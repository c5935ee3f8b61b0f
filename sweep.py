r"""Sweeps the hyperparameters of any config that defines get_sweep().

  python sweep.py --config=configs/default.py --workdir=/tmp/sweep --workers=2
  python sweep.py --config=configs/causal_lm.py:data=shakespeare \
      --workdir=/tmp/sweep_lm --config.num_train_steps=500

Each trial is `train.py --config=... --workdir=DIR/trials/<n>
--config.<field>=<value>` in its own process; `--config.x=y` here applies
to every trial. The study lives in DIR/study.db (SQLite) or in
--storage=postgresql://... (or mysql://..., or an Optuna journal file
path), which workers on other machines join with the same command.
Running the same command again continues the study; interrupted trials
resume from their own checkpoints; Ctrl-C or SIGTERM stops the trials at
a checkpoint and exits with code 75. DIR/report.md and .csv, DIR/plots/ and
DIR/tensorboard/ (HParams) are written at the end, and by --report at any
time. The search space: sweeping/spec.py.
"""
import os
import signal
import sys
import threading
import warnings

from absl import app
from absl import flags
from ml_collections import config_flags
import optuna

from cli import command
from errors import UserError
from sweeping import report as report_lib
from sweeping import spec as spec_lib
from sweeping import study as study_lib
from sweeping import trials as trials_lib
from sweeping import workers as workers_lib
from training import exit_codes

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file (with get_sweep()) and its :arg.',
    lock_config=False)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Study, trials and report.')
_WORKERS = flags.DEFINE_integer('workers', 1, 'Trials at once on this '
                                'machine; the local devices are split.')
_STORAGE = flags.DEFINE_string(
    'storage', '', 'Optuna storage URL or journal file path; default '
    'sqlite:///WORKDIR/study.db. A password in the URL is never printed '
    '(shown as ***), but it shows in `ps`: leave it out '
    '(postgresql://user@host/db) and give it to PostgreSQL through '
    'PGPASSWORD or ~/.pgpass instead.')
_STUDY_NAME = flags.DEFINE_string('study_name', '', 'Default: the '
                                  "workdir's name.")
_REPORT = flags.DEFINE_bool('report', False, 'Write the report of the '
                            'study as it is now, and run nothing.')
_HEARTBEAT = flags.DEFINE_integer(
    'heartbeat_s', 30, 'Seconds between trial heartbeats; a trial silent '
    f'for {study_lib.GRACE_HEARTBEATS}x this is failed and retried.')


def load_spec():
  """(spec, config text, overrides) from the flags; SpecError if bad."""
  config_text = config_flags.get_config_filename(flags.FLAGS['config'])
  path, colon, arg = config_text.partition(':')
  overrides = config_flags.get_override_values(flags.FLAGS['config'])
  raw = spec_lib.sweep_from_module(spec_lib.load_config_module(path), path,
                                   arg if colon else None)
  spec = spec_lib.parse_spec(raw, _CONFIG.value, overrides)
  return spec, config_text, {**spec.fixed, **overrides}


def main(argv):
  command.start(argv, uses_checkpoints=False)  # and matplotlib's notes
  if _CONFIG.value is None or _WORKDIR.value is None:
    raise app.UsageError('--config and --workdir are required')
  optuna.logging.set_verbosity(optuna.logging.ERROR)  # the progress line
  warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
  stopped = command.reporting_user_errors(
      lambda: sweep(os.path.abspath(_WORKDIR.value)))
  if stopped:  # train.py's code for 'stopped, resumable'
    print('stopped; run the same command again to continue', flush=True)
    sys.exit(exit_codes.EXIT_STOPPED)


def checked_spec():
  """(spec, config text, overrides, pruner, worker slots): every check
  before a study or a trial exists."""
  try:
    spec, config_text, overrides = load_spec()
    study_lib.make_sampler(spec)
    pruner = study_lib.make_pruner(spec, _CONFIG.value.num_train_steps)
  except spec_lib.SpecError as e:
    raise UserError(f'sweep spec: {e}') from e
  slots = workers_lib.split_devices(
      _WORKERS.value, workers_lib.local_gpus(dict(os.environ)),
      sorted(os.sched_getaffinity(0)))
  return spec, config_text, overrides, pruner, slots


def sweep(workdir: str) -> bool:
  """Runs the sweep (or, with --report, writes its report); whether a
  signal stopped it."""
  spec, config_text, overrides, pruner, slots = checked_spec()
  name = _STUDY_NAME.value or os.path.basename(workdir)
  fingerprint = '\n'.join([config_text, repr(sorted(overrides.items())),
                           spec.fingerprint()])
  if _REPORT.value:
    write_report(spec, workdir, name)
    return False
  if _STORAGE.value:  # a bad URL fails before the workdir exists
    storage = open_storage(workdir)
    make_workdir(workdir)
  else:
    make_workdir(workdir)
    storage = open_storage(workdir)
  study_lib.open_study(storage, name, spec, fingerprint,
                       study_lib.make_sampler(spec), pruner)
  # Trials run in the repository root: give them the file's absolute path.
  path, colon, arg = config_text.partition(':')
  running = workers_lib.Sweep(spec, os.path.abspath(path) + colon + arg,
                            overrides, workdir,
                            study_lib.has_heartbeat(storage),
                            threading.Event())
  for signum in (signal.SIGINT, signal.SIGTERM):  # trials checkpoint, stop
    signal.signal(signum, lambda *_: running.stop.set())

  def make_study(slot):
    salt = f'{os.uname().nodename}/{os.getpid()}/{slot.index}'
    return optuna.load_study(
        study_name=name, storage=storage,
        sampler=study_lib.make_sampler(spec, salt),
        pruner=study_lib.make_pruner(spec, _CONFIG.value.num_train_steps))

  print(f'sweep {name!r}: {spec.budget} settings of {", ".join(spec.fields)}'
        f' ({spec.sampler} sampler, {spec.pruner} pruner) on '
        f'{len(slots)} worker(s): ' + '; '.join(
            f'GPUs {",".join(s.gpus)}' if s.gpus else
            f'CPUs {",".join(map(str, s.cpus))}' if s.cpus else 'all devices'
            for s in slots), flush=True)
  workers_lib.run_workers(running, slots, make_study)
  write_report(spec, workdir, name, storage)
  return running.stop.is_set()


def make_workdir(workdir: str):
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f'--workdir={workdir} cannot be made: '
                    + ('it is a file' if os.path.isfile(workdir) else
                       str(e.strerror or e))) from e


def open_storage(workdir: str):
  url = _STORAGE.value or f'sqlite:///{os.path.join(workdir, "study.db")}'
  return study_lib.open_storage(url, _HEARTBEAT.value)  # UserError if bad


def write_report(spec, workdir: str, name: str, storage=None):
  """Writes the report (UserError if there is no study)."""
  if storage is None:
    if not _STORAGE.value and not os.path.exists(os.path.join(workdir,
                                                              'study.db')):
      raise UserError(f'no study in {workdir} (no study.db)')
    storage = open_storage(workdir)
  try:
    study = optuna.load_study(study_name=name, storage=storage)
  except KeyError:
    raise UserError(f'no study named {name!r} in the storage') from None
  path = report_lib.write_report(spec, study, workdir,
                                 f'Sweep {name}: {_CONFIG.value.task}')
  print(f'report: {path} | {workers_lib.progress(spec, study)}', flush=True)


if __name__ == '__main__':
  command.run(main)
