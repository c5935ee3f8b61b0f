"""The package layout: imports run downward only, and modules stay short.

train.py -> tasks -> input_data / decoding / training -> models. configs
describe runs and import only models (the ModelConfig fields).
"""
import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# What each package may import from the project (besides itself).
ALLOWED = {
    'models': set(),
    'input_data': set(),
    'decoding': {'models'},
    'training': {'models'},
    'tasks': {'input_data', 'decoding', 'training', 'models'},
    'configs': {'models'},
    'sweeping': {'tasks', 'training'},
}


def project_imports(path: pathlib.Path) -> set[str]:
  """Top-level project packages that `path` imports."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0:
      names = [node.module or '']
    else:
      continue
    found |= {n.split('.')[0] for n in names} & (set(ALLOWED) | {'train'})
  return found


@pytest.mark.parametrize('package', sorted(ALLOWED))
def test_imports_run_downward(package):
  for path in sorted((REPO / package).glob('*.py')):
    upward = project_imports(path) - ALLOWED[package] - {package}
    assert not upward, f'{path.relative_to(REPO)} imports {sorted(upward)}'


def test_no_module_is_long():
  for package in ALLOWED:
    for path in (REPO / package).glob('*.py'):
      lines = len(path.read_text().splitlines())
      assert lines <= 520, f'{path.relative_to(REPO)} has {lines} lines'
