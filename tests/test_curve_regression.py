"""The cheapest recorded loss curve (experiments/curves/default.json) still
holds, and the check catches a deliberately wrong change; every curve:
`python experiments/check_curves.py` (experiments/README.md)."""
import os
import subprocess
import sys

from experiments import check_curves as curves_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def check_curves(*args):
  # One CPU device, as the recorded runs had (conftest simulates 8).
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  done = subprocess.run(
      [sys.executable, 'experiments/check_curves.py', '--cheapest', *args],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  return done.returncode, done.stdout


def test_the_cheapest_curve_matches_its_record():
  code, out = check_curves()
  assert code == 0, out
  assert out.startswith('ok default: 150 steps'), out


def test_a_learning_rate_off_by_ten_percent_fails_naming_step_and_values():
  # The first window (steps 1-30) is enough to tell 2.7e-3 from 3e-3.
  code, out = check_curves('--steps=30',
                           '--override=optimizer.learning_rate=0.0027')
  assert code == 1, out
  lines = out.splitlines()
  assert lines[0].startswith('FAIL default: 30 steps'), out
  assert lines[1].strip().startswith(
      'default (configs/default.py): mean loss of steps 1-30 is '), out
  assert 'recorded 3.5491' in lines[1], out


def test_another_cpus_rounding_widens_or_drops_a_window():
  record = {'losses': [1.0] * 4, 'window': 1, 'spread': {
      'seed_1': [0.1, 0.1, 0.1, 0.1], 'seed_2': [0.1, 0.1, 0.1, 0.1],
      'rounding_probe': [0.0, 0.002, 0.0, 0.0]}}
  assert curves_lib.derive_tolerance(record) == [0.01, 0.01, 0.01, 0.01]
  record['spread']['other_machines'] = {'cpu b': {
      'seed_0': [0.0, 0.0, 0.005, 0.03], 'rounding_probe': [0.0] * 4}}
  # 3 x 0.005 widens window 3; 3 x 0.03 > half the seed spread drops 4.
  assert curves_lib.derive_tolerance(record) == [0.01, 0.01, 0.015, None]
