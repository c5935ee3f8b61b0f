"""What every command does around its one library call: logging, flag
parsing whose errors are one line, and bad input (errors.UserError) printed
as one line `error: <message>` with exit code 1. Any other exception is a
bug and keeps its traceback.

  def main(argv):
    command.start(argv)
    command.reporting_user_errors(lambda: library_call(...))

  if __name__ == '__main__':
    command.run(main)
"""
import sys
from typing import Callable, NoReturn

from absl import app
from absl import flags
from absl import logging

from errors import UserError
from training.exit_codes import EXIT_ERROR


def run(main: Callable[[list[str]], None]):
  """absl's app.run with the one-line flag errors of `parse_flags`."""
  app.run(main, flags_parser=parse_flags)


def show_traceback() -> bool:
  """--show_traceback, where the command defines it (sweep.py does not)."""
  return 'show_traceback' in flags.FLAGS and flags.FLAGS.show_traceback


def start(argv: list[str], *, uses_checkpoints: bool = True):
  """The common preamble: no positional arguments, absl's INFO logs off
  (orbax logs every file it writes), and orbax's error reports silenced
  (a failed save is reported in one line)."""
  logging.set_verbosity(logging.WARNING)
  if uses_checkpoints and not show_traceback():
    # Imported here: orbax is a heavy import that sweep.py does not need.
    from training import checkpointing  # pylint: disable=g-import-not-at-top
    checkpointing.quiet_orbax_errors()
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')


def require(*names: str):
  """Ends the process in one line if a flag of `names` is not given."""
  for name in names:
    if not flags.FLAGS[name].value:
      exit_with(EXIT_ERROR, f'error: --{name} is required')


def exit_with(code: int, line: str) -> NoReturn:
  print(line, file=sys.stderr, flush=True)
  sys.exit(code)


def reporting_user_errors(body: Callable[[], object]):
  """body()'s result; a UserError ends the process with its one line and
  EXIT_ERROR (its traceback with --show_traceback)."""
  try:
    return body()
  except UserError as e:
    if show_traceback():
      raise
    exit_with(EXIT_ERROR, f'error: {e}')


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, with bad --config.* overrides and config files that
  cannot be loaded reported in one line.

  config_flags raises plain KeyError/AttributeError for an unknown field
  (and ValueError/TypeError for a bad value, a config file's get_config a
  ValueError for a bad :arg) during parsing; a missing config file or one
  with a syntax error raises OSError/SyntaxError, some only when the
  config is first read. sys.exit(line) prints it and exits with 1.
  """
  try:
    rest = flags.FLAGS(argv)
    if 'config' in flags.FLAGS and flags.FLAGS.config is not None:
      flags.FLAGS.config.keys()  # a config that failed to load raises here
    return rest
  except (KeyError, AttributeError) as e:
    sys.exit(f'error: unknown config field: {one_line(e)}')
  except SyntaxError as e:
    sys.exit(f'error: --config file {e.filename} line {e.lineno}: {e.msg}')
  except OSError as e:
    sys.exit('error: --config file cannot be read: '
             f'{str(e).splitlines()[-1].strip()}')
  except (flags.Error, ValueError, TypeError) as e:
    sys.exit(f'error: bad command-line flag: {last_line(e)}')


def one_line(error) -> str:
  text = str(error).replace('\\n', ' ').replace('\\', '').replace("'", '')
  return ' '.join(text.split())


def last_line(error) -> str:
  """The message itself when config_flags wraps a whole traceback: its last
  line, prefixed by the flag when that is where it came from."""
  lines = [l.strip() for l in str(error).splitlines() if l.strip()]
  if len(lines) <= 1:
    return one_line(error)
  cause = error.__cause__
  while cause is not None and cause.__cause__ is not None:
    cause = cause.__cause__
  return one_line(f'{lines[0]} {cause or lines[-1]}')
