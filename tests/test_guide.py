"""The docs run: on every page of docs/, every ```python block, in order, in
one namespace per page, prints exactly the ```text block that follows it
(nothing if none follows); docs/make_figures.py writes every figure.

  python tests/test_guide.py [page.md] [-v]   # each block's real output,
                                              # to update a page's text
"""
import contextlib
import glob
import importlib.util
import io
import os
import re
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDE = os.path.join(REPO, 'docs', 'transformers.md')
PAGES = sorted(glob.glob(os.path.join(REPO, 'docs', '**', '*.md'),
                         recursive=True))
FIGURES = ('architecture.png', 'sinusoidal_positions.png',
           'learning_rate.png', 'cross_attention.png')

# A fenced block; group 1 is the language, group 2 the body.
_FENCE = re.compile(r'^```(\w*)\n(.*?)^```\s*$', re.S | re.M)


def code_blocks(text: str):
  """[(line, code, expected output or None)] for every ```python block.

  The expected output is a ```text block separated from the code block by
  nothing but blank lines.
  """
  blocks = []
  fences = list(_FENCE.finditer(text))
  for i, fence in enumerate(fences):
    if fence.group(1) != 'python':
      continue
    expected = None
    if i + 1 < len(fences) and fences[i + 1].group(1) == 'text':
      between = text[fence.end():fences[i + 1].start()]
      if not between.strip():
        expected = fences[i + 1].group(2)
    line = text.count('\n', 0, fence.start()) + 1
    blocks.append((line, fence.group(2), expected))
  return blocks


def run_blocks(path: str):
  """Yields (line, expected, printed) for each block, run in order."""
  with open(path, encoding='utf-8') as f:
    blocks = code_blocks(f.read())
  namespace = {'__name__': '__guide__'}
  cwd = os.getcwd()
  os.chdir(REPO)
  try:
    for line, code, expected in blocks:
      out = io.StringIO()
      with contextlib.redirect_stdout(out):
        try:
          exec(compile(code, f'{path}:{line}', 'exec'), namespace)  # pylint: disable=exec-used
        except Exception as e:
          raise AssertionError(
              f'{os.path.basename(path)}, block at line {line} failed: '
              f'{type(e).__name__}: {e}') from e
      yield line, expected, out.getvalue()
  finally:
    os.chdir(cwd)


def test_guide_has_code_and_figures():
  with open(GUIDE, encoding='utf-8') as f:
    text = f.read()
  assert len(code_blocks(text)) >= 20
  for name in FIGURES:
    assert f'figures/{name}' in text, name
    assert os.path.getsize(os.path.join(REPO, 'docs', 'figures', name)) > 0


@pytest.mark.parametrize('page', [os.path.relpath(p, REPO) for p in PAGES])
def test_page_code_runs_and_prints_what_the_page_shows(page):
  for line, expected, printed in run_blocks(os.path.join(REPO, page)):
    assert printed == (expected or ''), (
        f'{page}, block at line {line} printed:\n{printed}\nthe page shows:'
        f'\n{expected}')


def test_make_figures_writes_every_figure(tmp_path):
  spec = importlib.util.spec_from_file_location(
      'make_figures', os.path.join(REPO, 'docs', 'make_figures.py'))
  make_figures = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(make_figures)
  out = tmp_path / 'figures'
  with contextlib.redirect_stdout(io.StringIO()):
    make_figures.main([f'--out={out}', '--steps=10'])
  for name in FIGURES:
    assert (out / name).stat().st_size > 1000, name


if __name__ == '__main__':
  sys.path.insert(0, REPO)
  sys.path.insert(0, os.path.join(REPO, 'tests'))
  import conftest  # pylint: disable=unused-import  # same devices as pytest
  pages = [a for a in sys.argv[1:] if a.endswith('.md')] or [GUIDE]
  for page in pages:
    for line, expected, printed in run_blocks(os.path.abspath(page)):
      status = 'ok' if printed == (expected or '') else 'DIFFERS'
      print(f'--- {page}, block at line {line}: {status}')
      if status != 'ok' or '-v' in sys.argv:
        print(printed, end='')
