"""The flags that more than one command defines, defined once (absl allows
one definition per name, and the tests import every command into one
process), and the trained run they name.

train.py, evaluate.py, predict.py and export.py take --config, --workdir
and --show_traceback; the three that use a trained workdir also take
--step, --average_last and --output. sweep.py defines its own --config
(unlocked: a sweep sets fields per trial) and --workdir (the study's).
"""
from typing import Callable

from absl import flags
from ml_collections import config_flags

from configs.base_config import base_config
from training import run_config, trained_run

CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config.',
                                         lock_config=True)
WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, logs, metrics.')
SHOW_TRACEBACK = flags.DEFINE_bool('show_traceback', False,
                                   'Show full tracebacks for input errors.')

# The trained workdir's checkpoint (evaluate.py, predict.py, export.py).
STEP = flags.DEFINE_integer('step', None,
                            'Checkpoint step to use (default: the newest).')
AVERAGE_LAST = flags.DEFINE_integer(
    'average_last', 0, 'Use the mean parameters of the last N checkpoints.')
# One flag, two meanings (absl allows one definition per name).
OUTPUT = flags.DEFINE_string(
    'output', None, 'predict.py: output file (default -: stdout); '
    'export.py: the directory to write.')


def trained_run_of_flags(adjust: Callable = lambda config: config
                         ) -> trained_run.TrainedRun:
  """The run that --workdir (--config, --step, --average_last) names;
  `adjust` changes its config before the task is built. Its config comes
  from <workdir>/config.json, or --config for a run without one."""
  workdir = WORKDIR.value
  config = run_config.load_or(workdir, base_config(), CONFIG.value)
  return trained_run.load(workdir, adjust(config), step=STEP.value,
                          average_last=AVERAGE_LAST.value)
