r"""Scores a trained workdir's checkpoint on its eval split or on a file.

  python evaluate.py --workdir=/tmp/reverse                  # newest
  python evaluate.py --workdir=/tmp/reverse --step=1000
  python evaluate.py --workdir=/tmp/reverse --average_last=3
  python evaluate.py --workdir=/tmp/m30k --eval_file=/data/test.en,/data/test.de

The metrics are training's (training/evaluator.py, with the run's config):
one line per metric on stdout, and a record in
<workdir>/evaluations/<name>.json, apart from the training records. The
run's config comes from <workdir>/config.json (--config=... for a run that
has none).
"""
import os
import sys

from absl import flags

from cli import command
from cli import flags as cli_flags
from errors import UserError
from training import evaluator

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


def evaluate_and_print(eval_file: str | None):
  run = cli_flags.trained_run_of_flags(
      lambda c: with_eval_file(c, eval_file) if eval_file else c)
  metrics = evaluator.evaluate_run(run, eval_file)
  for name, value in sorted(metrics.items()):
    print(f'{name} {value:.4f}')
  record = evaluator.record_path(
      run.workdir, evaluator.record_name(run.steps, eval_file))
  print(f'checkpoint(s) {", ".join(map(str, run.steps))}; written to '
        f'{record}', file=sys.stderr)


def main(argv):
  command.start(argv)
  command.require('workdir')
  command.reporting_user_errors(
      lambda: evaluate_and_print(_EVAL_FILE.value))


if __name__ == '__main__':
  command.run(main)
