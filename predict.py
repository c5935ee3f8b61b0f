r"""Predictions of a trained workdir: one output line per input line.

  python predict.py --workdir=/tmp/m30k --input=test.en --output=test.de \
      --beam_size=4 --alpha=0.6
  echo "ROMEO:" | python predict.py --workdir=/tmp/shakespeare \
      --temperature=0.8 --top_k=40 --max_new_tokens=200 --seed=1
  python predict.py --workdir=/tmp/bert_qa --input=questions.jsonl
  python predict.py --workdir=/tmp/bert_cls < sentences.txt

The mode is the one the run's task names (its predict_mode), with its own
tokenizer and config (training/prediction.py: translate, generate, answer,
classify, each line's format there); causal_lm is greedy with --temperature=0, else
sampled with --top_k / --top_p and --seed.
"""
import os
import sys

from absl import flags

from cli import command
from cli import flags as cli_flags
from errors import UserError
from input_data import text_sources
from training import prediction

_INPUT = flags.DEFINE_string('input', '-', 'Input file; - reads stdin.')
# Not --batch_size: experiments/benchmark.py defines that, and the tests
# import both into one process (absl flags are global).
_BATCH_SIZE = flags.DEFINE_integer('inputs_per_batch', 16,
                                   'Inputs predicted together.')
_BEAM_SIZE = flags.DEFINE_integer(
    'beam_size', None, "seq2seq: beams (1: greedy; default: the run's "
    'config.decode.beam_size).')
_ALPHA = flags.DEFINE_float(
    'alpha', None, "seq2seq: length penalty ((5+len)/6)^alpha (default: the "
    "run's config.decode.alpha).")
_MAX_NEW_TOKENS = flags.DEFINE_integer('max_new_tokens', 64,
                                       'causal_lm: tokens to generate.')
_TEMPERATURE = flags.DEFINE_float('temperature', 0.0,
                                  'causal_lm: 0 is greedy.')
_TOP_K = flags.DEFINE_integer('top_k', 0, 'causal_lm: sample among the k '
                              'most likely tokens (0: all).')
_TOP_P = flags.DEFINE_float('top_p', 1.0, 'causal_lm: nucleus mass (1: all).')
_SEED = flags.DEFINE_integer('seed', 0, 'causal_lm: sampling seed.')
_START_TEXT = flags.DEFINE_string(
    'start_text', None, "causal_lm: the one-token text every generation "
    "starts from (default: the run's config.decode.start_text; '' is EOS).")


# ----------------------------------------------------------------- input --
def read_inputs(path: str) -> list[str]:
  """Lines of `path` (- : stdin), UTF-8; empty input fails in one line."""
  if path == '-':
    data = sys.stdin.buffer.read()
    try:
      lines = data.decode('utf-8').split('\n')
    except UnicodeDecodeError as e:
      line = data.count(b'\n', 0, e.start) + 1
      raise UserError(f'--input=-: invalid UTF-8 on line {line}') from None
    if lines[-1] == '':
      lines.pop()
    lines = [l.rstrip('\r') for l in lines]
  else:
    lines = text_sources.read_lines(path)
  if not any(l.strip() for l in lines):
    raise UserError(f'--input={path}: no input (the file is empty)')
  return lines


def check_output(path: str):
  """Fails in one line, before any prediction is made, if --output cannot
  be a file: a directory, or in a directory that does not exist."""
  if path == '-':
    return
  if os.path.isdir(path):
    raise UserError(f'--output={path} is a directory; give a file name')
  parent = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(parent):
    raise UserError(f'--output={path}: directory {parent} does not exist')


def _options(mode: str | None) -> dict:
  """The flags that `mode` (training/prediction.MODES) takes."""
  options = dict(batch_size=_BATCH_SIZE.value)
  if mode == 'translate':
    options.update(beam_size=_BEAM_SIZE.value, alpha=_ALPHA.value)
  elif mode == 'generate':
    options.update(max_new_tokens=_MAX_NEW_TOKENS.value,
                   temperature=_TEMPERATURE.value, top_k=_TOP_K.value,
                   top_p=_TOP_P.value, seed=_SEED.value)
  return options


def _with_start_text(config):
  if _START_TEXT.value is not None:
    config.decode.start_text = _START_TEXT.value
  return config


def predict_and_write(output: str):
  """Predicts the lines of --input and writes them to `output`."""
  check_output(output)
  lines = read_inputs(_INPUT.value)
  if _BATCH_SIZE.value < 1 or _MAX_NEW_TOKENS.value < 0:
    raise UserError('--inputs_per_batch must be >= 1 and --max_new_tokens '
                    '>= 0')
  run = cli_flags.trained_run_of_flags(_with_start_text)
  outputs = prediction.predict_lines(run, lines,
                                      **_options(run.task.predict_mode))
  text = ''.join(o + '\n' for o in outputs)
  if output == '-':
    sys.stdout.write(text)
    return
  try:
    with open(output, 'w', encoding='utf-8') as f:
      f.write(text)
  except OSError as e:
    raise UserError(f'--output={output} cannot be written: '
                    f'{e.strerror or e}') from None


def main(argv):
  command.start(argv)
  command.require('workdir')
  command.reporting_user_errors(
      lambda: predict_and_write(cli_flags.OUTPUT.value or '-'))


if __name__ == '__main__':
  command.run(main)
