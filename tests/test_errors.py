"""Bad input is one error class, errors.UserError, which every command
prints as one line; any other exception is a bug and keeps its traceback."""
import ast
import os
import pathlib
import subprocess
import sys

import pytest

import conftest
import errors
from training import exit_codes

REPO = pathlib.Path(__file__).resolve().parents[1]
ONE_DEVICE = {**os.environ, 'XLA_FLAGS': (
    f'--xla_force_host_platform_device_count=1 {conftest.COLLECTIVE_TIMEOUTS}')}
TINY_RUN = ['--config=configs/default.py', '--config.num_devices=1',
            '--config.model.num_layers=1', '--config.model.d_model=16',
            '--config.model.d_ff=32', '--config.num_train_steps=2',
            '--config.decode.beam_size=0']


def run(*args, stdin=''):
  """A command line in a subprocess on one device -> (code, stderr)."""
  done = subprocess.run([sys.executable, *args], cwd=REPO, env=ONE_DEVICE,
                        input=stdin, capture_output=True, text=True,
                        timeout=300)
  return done.returncode, done.stderr


def project_sources():
  skip = {'.venv', 'workdirs', 'tests', '.git'}
  return [p for p in REPO.rglob('*.py')
          if not skip & set(p.relative_to(REPO).parts)]


def test_user_error_is_the_one_value_error_of_the_project():
  """Every error class for bad input derives from errors.UserError: none
  subclasses ValueError (or another builtin error of bad input) itself."""
  own = []
  for path in project_sources():
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ClassDef):
        bases = {ast.unparse(b) for b in node.bases}
        if bases & {'ValueError', 'TypeError', 'KeyError'}:
          own.append(f'{path.relative_to(REPO)}:{node.name}')
  assert own == ['errors.py:UserError']


def test_the_specific_errors_are_user_errors():
  from input_data import text_sources  # pylint: disable=g-import-not-at-top
  from models import hf  # pylint: disable=g-import-not-at-top
  from sweeping import spec  # pylint: disable=g-import-not-at-top
  from training import checkpointing, workdir_lock  # pylint: disable=g-import-not-at-top
  for error in (text_sources.DataError, spec.SpecError, hf.ExportError,
                hf.CheckpointMismatchError, checkpointing.ShapeMismatch,
                workdir_lock.WorkdirLocked):
    assert issubclass(error, errors.UserError), error
  # A failed save is not bad input (a full disk is reported as one).
  assert not issubclass(checkpointing.CheckpointSaveError, ValueError)


def test_errors_module_imports_nothing_of_the_project():
  tree = ast.parse((REPO / 'errors.py').read_text())
  assert not [n for n in ast.walk(tree)
              if isinstance(n, (ast.Import, ast.ImportFrom))]


@pytest.mark.parametrize('args, stdin, message', [
    (['train.py', *TINY_RUN, '--workdir={tmp}/w', '--config.task=nonsense'],
     '', "error: config.task='nonsense' is not one of"),
    (['evaluate.py', '--workdir={tmp}/missing'], '',
     'error: --workdir={tmp}/missing does not exist'),
    (['predict.py', '--workdir={tmp}/missing'], '5 9 7\n',
     'error: --workdir={tmp}/missing does not exist'),
    (['export.py', '--workdir={tmp}'], '', 'error: --output is required'),
    (['sweep.py', '--config=configs/default.py', '--workdir={tmp}/s',
      '--workers=0'], '', 'error: --workers=0: expected at least 1'),
], ids=['train', 'evaluate', 'predict', 'export', 'sweep'])
def test_each_command_prints_a_user_error_in_one_line(tmp_path, args, stdin,
                                                     message):
  code, stderr = run(*[a.format(tmp=tmp_path) for a in args], stdin=stdin)
  lines = stderr.strip().splitlines()
  assert code == exit_codes.EXIT_ERROR, stderr[-2000:]
  assert len(lines) == 1 and lines[0].startswith(
      message.format(tmp=tmp_path)), stderr[-2000:]


# The loss raises while jax traces the train step: a bug, not bad input.
BROKEN_LOSS = '''
import runpy, sys
from tasks import seq2seq
def loss_sums(self, params, batch, rng, train):
  raise ValueError('a bug inside the jitted step')
seq2seq.Seq2SeqTask.loss_sums = loss_sums
sys.argv = ['train.py'] + sys.argv[1:]
runpy.run_path('train.py', run_name='__main__')
'''


def test_a_value_error_inside_the_jitted_step_keeps_its_traceback(tmp_path):
  code, stderr = run('-c', BROKEN_LOSS, *TINY_RUN,
                     f'--workdir={tmp_path / "w"}')
  assert code != 0
  assert 'Traceback (most recent call last)' in stderr, stderr[-2000:]
  assert 'ValueError: a bug inside the jitted step' in stderr
  assert 'train_step' in stderr  # raised where the step is traced
  assert not any(l.startswith('error: ') for l in stderr.splitlines())
