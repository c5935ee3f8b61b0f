"""A finished run opened from its workdir, for the commands that use it
(evaluate.py, predict.py, export.py): its config, task, tokenizer and
parameters, and the command-line handling they share.

Flags: --workdir, --config and --show_traceback are train.py's; --step and
--average_last choose the checkpoint (default: the newest); --output is
predict.py's file and export.py's directory.
"""
import dataclasses
import sys
from typing import Callable

from absl import flags
import jax
import ml_collections

import train  # pylint: disable=unused-import  (defines the shared flags)
from configs.base_config import base_config
from errors import UserError
from tasks import Task, get_task
from training import checkpointing, run_config

_STEP = flags.DEFINE_integer('step', None,
                             'Checkpoint step to use (default: the newest).')
_AVERAGE_LAST = flags.DEFINE_integer(
    'average_last', 0, 'Use the mean parameters of the last N checkpoints.')
# One flag, two meanings (absl allows one definition per name).
OUTPUT = flags.DEFINE_string(
    'output', None, 'predict.py: output file (default -: stdout); '
    'export.py: the directory to write.')


@dataclasses.dataclass
class TrainedRun:
  workdir: str
  config: ml_collections.ConfigDict
  task: Task
  params: dict       # host arrays
  steps: list[int]   # the checkpoint(s) the parameters come from (mean)

  @property
  def tokenizer(self):
    """The run's own (saved in the workdir or named by its config)."""
    return self.task.data.run_tokenizer(self.workdir)


def for_backend(config, backend: str, log=print):
  """`config` runnable on `backend` (jax.default_backend()): a run trained
  with cuDNN attention is used elsewhere with 'fused', the same attention
  computed by XLA (no parameter depends on the impl), so a GPU run can be
  evaluated, predicted from and exported on a CPU."""
  if config.model.attention_impl == 'cudnn' and backend != 'gpu':
    log(f"note: the run's attention_impl 'cudnn' needs a GPU; using 'fused' "
        f'(the same attention by XLA) on {backend}')
    config.model.attention_impl = 'fused'
  return config


def load(workdir: str, config, *, step: int | None = None,
         average_last: int = 0) -> TrainedRun:
  """The task of `config` with the parameters of `workdir`'s newest
  checkpoint, of `step`, or the mean of the last `average_last`."""
  config = for_backend(config, jax.default_backend(),
                       log=lambda line: print(line, file=sys.stderr))
  task = get_task(config)
  expected = jax.eval_shape(task.init_variables, jax.random.key(0))['params']
  restored = checkpointing.restore_params(
      workdir, expected, step=step, average_last=average_last)
  task.data.run_tokenizer(workdir)  # the task's own (e.g. bos_id) is the run's
  return TrainedRun(workdir, config, task, restored.params, restored.steps)


def from_flags(adjust: Callable = lambda config: config) -> TrainedRun:
  """The run that --workdir (--config, --step, --average_last) names;
  `adjust` changes its config before the task is built."""
  workdir = flags.FLAGS.workdir
  config = run_config.load_or(workdir, base_config(), flags.FLAGS.config)
  return load(workdir, adjust(config), step=_STEP.value,
              average_last=_AVERAGE_LAST.value)


def run_command(command: Callable[[], None]):
  """Runs a command's body; bad input (UserError) ends it with one line on
  stderr and exit code 1 (the traceback with --show_traceback). Any other
  exception is a bug and keeps its traceback."""
  if not flags.FLAGS.workdir:
    sys.exit('error: --workdir is required')
  if not flags.FLAGS.show_traceback:  # orbax's errors are raised to us too
    checkpointing.quiet_orbax_errors()
  try:
    command()
  except UserError as e:
    if flags.FLAGS.show_traceback:
      raise
    sys.exit(f'error: {e}')
