"""The exit codes live in training/exit_codes.py only, and README's list of
train.py's codes says the same numbers."""
import pathlib
import re

from sweeping import trials
from training import exit_codes

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_readme_lists_the_codes_of_the_module():
  readme = (REPO / 'README.md').read_text()
  section = readme.split('### Exit codes of `train.py`', 1)[1]
  listed = [int(n) for n in re.findall(r'^- `(\d+)`:', section.split(
      '\n\n', 2)[1], re.MULTILINE)]
  assert listed == [exit_codes.EXIT_OK, exit_codes.EXIT_ERROR,
                    exit_codes.EXIT_DIVERGED, exit_codes.EXIT_STOPPED]


def test_no_other_module_defines_an_exit_code():
  sources = [p for p in REPO.glob('*.py')] + [
      p for d in ('cli', 'training', 'sweeping', 'tasks', 'input_data', 'decoding',
                  'models', 'configs') for p in (REPO / d).glob('*.py')]
  defined = re.compile(r'^\s*EXIT_\w+\s*=|^\s*\w+\s*=\s*75\b', re.MULTILINE)
  others = [str(p.relative_to(REPO)) for p in sources
            if p.name != 'exit_codes.py' and defined.search(p.read_text())]
  assert not others, f'exit codes defined outside training/exit_codes.py: ' \
                     f'{others}'


def test_the_sweep_reads_train_py_codes_by_name():
  outcome = lambda code: trials._outcome(code, None, '', {10: 0.5}, 10, '')
  assert outcome(exit_codes.EXIT_OK).state == 'complete'
  assert outcome(exit_codes.EXIT_STOPPED).state == 'interrupted'
  assert outcome(exit_codes.EXIT_DIVERGED).state == 'failed'
  assert outcome(exit_codes.EXIT_ERROR).state == 'failed'
