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
time. The search space: sweeping/spec.py; the run: sweeping/driver.py.
"""
import os
import sys
import warnings

from absl import app
from absl import flags
from ml_collections import config_flags
import optuna

from cli import command
from errors import UserError
from sweeping import driver
from sweeping import spec as spec_lib
from sweeping import study as study_lib
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


def request_from_flags() -> driver.SweepRequest:
  """The sweep the flags ask for; UserError naming what is wrong."""
  config_text = config_flags.get_config_filename(flags.FLAGS['config'])
  path, colon, arg = config_text.partition(':')
  overrides = config_flags.get_override_values(flags.FLAGS['config'])
  try:
    raw = spec_lib.sweep_from_module(spec_lib.load_config_module(path), path,
                                     arg if colon else None)
    spec = spec_lib.parse_spec(raw, _CONFIG.value, overrides)
  except spec_lib.SpecError as e:
    raise UserError(f'sweep spec: {e}') from e
  return driver.SweepRequest(
      spec=spec, config=_CONFIG.value, config_text=config_text,
      overrides={**spec.fixed, **overrides},
      workdir=os.path.abspath(_WORKDIR.value), workers=_WORKERS.value,
      storage_url=_STORAGE.value, study_name=_STUDY_NAME.value,
      heartbeat_s=_HEARTBEAT.value)


def sweep() -> bool:
  """Runs the sweep, or with --report writes its report; whether a signal
  stopped it."""
  request = request_from_flags()
  if _REPORT.value:
    driver.checked_pruner_and_slots(request)  # run_sweep checks its own
    driver.write_report(request)
    return False
  return driver.run_sweep(request)


def main(argv):
  command.start(argv, uses_checkpoints=False)  # and matplotlib's notes
  if _CONFIG.value is None or _WORKDIR.value is None:
    raise app.UsageError('--config and --workdir are required')
  optuna.logging.set_verbosity(optuna.logging.ERROR)  # the progress line
  warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
  stopped = command.reporting_user_errors(sweep)
  if stopped:  # train.py's code for 'stopped, resumable'
    print('stopped; run the same command again to continue', flush=True)
    sys.exit(exit_codes.EXIT_STOPPED)


if __name__ == '__main__':
  command.run(main)
