r"""Scores a trained workdir's checkpoint on its eval split or on a file.

  python evaluate.py --workdir=/tmp/reverse                  # newest
  python evaluate.py --workdir=/tmp/reverse --step=1000
  python evaluate.py --workdir=/tmp/reverse --average_last=3
  python evaluate.py --workdir=/tmp/m30k --eval_file=/data/test.en,/data/test.de

The metrics are train.py's (train.evaluate, with the run's config): one line
per metric on stdout, and a record in <workdir>/evaluations/<name>.json,
apart from the training records. The run's config comes from
<workdir>/config.json (--config=... for a run that has none).
"""
import functools
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax.numpy as jnp

from errors import UserError
import train
import trained_run

_EVAL_FILE = flags.DEFINE_string(
    'eval_file', None, "A file in the run's data format to score instead of "
    "its eval split ('parallel' data: SOURCE,TARGET).")


def with_eval_file(config, path: str):
  """The run's config reading its eval split from `path`, in the run's own
  file format (config.data.format)."""
  data = config.data
  if data.source != 'files' or data.format == 'hf':
    raise UserError(f'--eval_file: the run reads no files (config.data.'
                    f'source={data.source!r}, format={data.format!r})')
  paths = path.split(',')
  if len(paths) != (2 if data.format == 'parallel' else 1):
    raise UserError(f'--eval_file={path}: format {data.format!r} takes '
                    + ('SOURCE,TARGET' if data.format == 'parallel' else
                       'one file'))
  config = config.copy_and_resolve_references()
  # Absolute patterns: os.path.join drops data_dir; '{' is escaped because
  # patterns are formatted with the split name.
  patterns = [os.path.abspath(p).replace('{', '{{').replace('}', '}}')
              for p in paths]
  with config.unlocked():
    config.data.data_dir = os.sep
    config.data.max_examples = 0
    if data.format == 'parallel':
      config.data.inputs_pattern, config.data.targets_pattern = patterns
    else:
      config.data.file_pattern = patterns[0]
    if data.format == 'text':
      config.data.split_fractions = {data.eval_split: (0.0, 1.0)}
  return config


def score(config, task, params, step: int) -> dict:
  """train.evaluate on `params` (host arrays) with the run's parallelism."""
  dp = train.make_parallel(config, task)
  dp.check_batch_size(config.eval_batch_size, 'eval_batch_size')
  state = dp.place_state(train.TrainState(
      step=jnp.asarray(step, jnp.int32), params=params, opt_state=()))
  compiled = {
      'eval': dp.compile(functools.partial(
          train.eval_step, task=task, axis_name=dp.axis_name), num_sharded=1),
      'predict': dp.compile(functools.partial(train.predict_step, task=task),
                            num_sharded=1),
  }
  return train.evaluate(config, task, dp, state,
                        task.eval_batches(config.eval_batch_size), compiled)


def evaluate_run(run: trained_run.TrainedRun, eval_file: str | None = None
                 ) -> dict:
  """Scores the run's parameters and writes the record; returns metrics.
  With `eval_file`, the run's config must already read it
  (`with_eval_file`)."""
  run.tokenizer  # the run's own, before the eval pipeline asks for one
  metrics = score(run.config, run.task, run.params, run.steps[-1])
  write_record(run.workdir, record_name(run.steps, eval_file),
               dict(steps=run.steps, eval_file=eval_file, metrics=metrics))
  return metrics


def record_name(steps, eval_file) -> str:
  name = (f'step_{steps[0]}' if len(steps) == 1 else
          f'mean_of_{len(steps)}_to_step_{steps[-1]}')
  if eval_file:
    name += '_on_' + os.path.basename(eval_file.split(',')[0])
  return name


def write_record(workdir: str, name: str, record: dict):
  directory = os.path.join(workdir, 'evaluations')
  path = os.path.join(directory, name + '.json')
  try:
    os.makedirs(directory, exist_ok=True)
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
      json.dump(record, f, indent=2, sort_keys=True)
      f.write('\n')
    os.replace(path + '.tmp', path)
  except OSError as e:  # the workdir's disk or permissions
    raise UserError(f'{path} cannot be written: {e.strerror or e}') from e


def main(argv):
  logging.set_verbosity(logging.WARNING)  # orbax logs every file it reads
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')

  def command():
    eval_file = _EVAL_FILE.value
    run = trained_run.from_flags(
        lambda c: with_eval_file(c, eval_file) if eval_file else c)
    metrics = evaluate_run(run, eval_file)
    for name, value in sorted(metrics.items()):
      print(f'{name} {value:.4f}')
    record = os.path.join(run.workdir, 'evaluations',
                          record_name(run.steps, eval_file) + '.json')
    print(f'checkpoint(s) {", ".join(map(str, run.steps))}; written to '
          f'{record}', file=sys.stderr)

  trained_run.run_command(command)


if __name__ == '__main__':
  app.run(main, flags_parser=train.parse_flags)
