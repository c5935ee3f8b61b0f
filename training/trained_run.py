"""A finished run opened from its workdir, for the commands that use one
(evaluate.py, predict.py, export.py): its config, task, tokenizer and
parameters (the newest checkpoint, a step, or the mean of the last N),
and its export to the Hugging Face layout.
"""
import dataclasses
import sys

import jax
import ml_collections

from errors import UserError
from input_data import tokenizers
from models import hf
from tasks import Task, get_task
from training import saved_params


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
  restored = saved_params.restore_params(
      workdir, expected, step=step, average_last=average_last)
  task.data.run_tokenizer(workdir)  # the task's own (e.g. bos_id) is the run's
  return TrainedRun(workdir, config, task, restored.params, restored.steps)


def export_run(run: TrainedRun, output: str) -> list[str]:
  """Writes the run's model and tokenizer to `output` in the Hugging Face
  layout (models/hf/); the file names."""
  try:
    files = hf.export_hf_checkpoint(
        run.task.model_config, run.params, run.task.model_name, output,
        **run.task.export_token_ids(run.tokenizer))
    if not run.task.builtin_data:
      files += tokenizers.save_for_transformers(
          run.config.tokenizer, run.workdir, output,
          run.task.model_config.max_len)
  except OSError as e:  # the output's disk or permissions
    raise UserError(f'--output={output} cannot be written: '
                    f'{e.strerror or e}') from e
  return files
