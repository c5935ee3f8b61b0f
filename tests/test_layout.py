"""The package layout: imports run downward only, and modules stay short.

The commands (train.py, evaluate.py, predict.py, export.py, sweep.py) ->
cli -> the runners of training/ (the loop, the evaluator, a trained run,
its predictions) -> tasks -> input_data / decoding / the rest of training
-> models. configs describe runs and import only models (the ModelConfig
fields). errors.py imports nothing of the project, so every module may
raise its UserError.
"""
import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
COMMANDS = {'train', 'evaluate', 'predict', 'export', 'sweep'}
# What each package may import from the project (besides itself).
ALLOWED = {
    'models': set(),
    'input_data': set(),
    'decoding': {'models'},
    'training': {'models', 'configs'},
    'tasks': {'input_data', 'decoding', 'training', 'models'},
    'configs': {'models'},
    'sweeping': {'tasks', 'training'},
    'cli': {'configs', 'training'},
}
# The modules of training/ that run a task sit above tasks/ (which the
# rest of training/ serves) and may import what tasks/ may, and tasks/.
RUNNERS = {'loop', 'evaluator', 'trained_run', 'prediction'}
RUNNER_ALLOWED = ALLOWED['tasks'] | {'tasks', 'configs'}


def imported_modules(path: pathlib.Path) -> set[str]:
  """Dotted names of the modules `path` imports (absolute imports)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.level == 0:
      found |= {f'{node.module}.{a.name}' for a in node.names} | {
          node.module or ''}
  return found


def project_imports(path: pathlib.Path) -> set[str]:
  """Top-level project packages (and commands) that `path` imports."""
  return {n.split('.')[0] for n in imported_modules(path)} & (
      set(ALLOWED) | COMMANDS)


@pytest.mark.parametrize('package', sorted(ALLOWED))
def test_imports_run_downward(package):
  for path in sorted((REPO / package).glob('*.py')):
    allowed = ALLOWED[package]
    if package == 'training' and path.stem in RUNNERS:
      allowed = RUNNER_ALLOWED
    upward = project_imports(path) - allowed - {package}
    assert not upward, f'{path.relative_to(REPO)} imports {sorted(upward)}'


def test_only_runners_and_commands_import_the_runners():
  runners = {f'training.{name}' for name in RUNNERS}
  for package in ALLOWED:
    for path in sorted((REPO / package).glob('*.py')):
      if package in ('cli',) or (package == 'training' and
                                 path.stem in RUNNERS):
        continue
      assert not imported_modules(path) & runners, path.relative_to(REPO)


def test_a_command_imports_no_other_command():
  for name in COMMANDS:
    path = REPO / f'{name}.py'
    assert not project_imports(path) & (COMMANDS - {name}), path.name


def test_no_module_is_long():
  for package in [*ALLOWED, 'docs']:  # models/hf/ too
    for path in (REPO / package).rglob('*.py'):
      lines = len(path.read_text().splitlines())
      assert lines <= 420, f'{path.relative_to(REPO)} has {lines} lines'
  for name in COMMANDS:
    lines = len((REPO / f'{name}.py').read_text().splitlines())
    assert lines <= 150, f'{name}.py has {lines} lines: a command is ' \
                         'argument handling plus one library call'
