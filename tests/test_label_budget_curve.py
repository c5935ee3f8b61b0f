"""experiments/label_budget_curve.py: the choice of learning rate, the
results it reads back and its figure (the runs themselves are sweep.py and
train.py, tested on their own)."""
import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    'label_budget_curve', ROOT / 'experiments' / 'label_budget_curve.py')
curve = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(curve)


def test_the_best_complete_trial_gives_the_learning_rate(tmp_path):
  (tmp_path / 'report.csv').write_text(
      'trial,state,optimizer.learning_rate,final eval/accuracy,workdir\n'
      '0,complete,0.0003,0.695,trials/0\n1,complete,0.001,0.71,trials/1\n'
      '2,failed,0.01,,trials/2\n3,complete,3e-05,0.52,trials/3\n')
  assert curve.best_learning_rate(str(tmp_path)) == (0.001, 0.71)


def test_a_tie_in_accuracy_goes_to_the_lower_held_out_loss(tmp_path):
  (tmp_path / 'report.csv').write_text(
      'trial,state,optimizer.learning_rate,final eval/accuracy,workdir\n'
      '1,complete,0.0001,0.878,trials/1\n2,complete,3e-05,0.878,trials/2\n'
      '0,complete,0.0003,0.8735,trials/0\n')
  for trial, loss in (('0', 0.50), ('1', 0.47), ('2', 0.36)):
    (tmp_path / 'trials' / trial).mkdir(parents=True)
    (tmp_path / 'trials' / trial / 'metrics.jsonl').write_text(
        json.dumps({'step': 400, 'eval/loss': 0.9}) + '\n' +
        json.dumps({'step': 800, 'eval/loss': loss}) + '\n')
  assert curve.best_learning_rate(str(tmp_path)) == (3e-5, 0.878)


def test_dev_accuracy_is_read_at_the_final_step_only(tmp_path):
  assert curve.dev_accuracy(str(tmp_path), 400) is None
  (tmp_path / 'metrics.jsonl').write_text(
      json.dumps({'step': 200, 'eval/accuracy': 0.6}) + '\n' +
      json.dumps({'step': 400, 'train/loss': 0.1}) + '\n')
  assert curve.dev_accuracy(str(tmp_path), 400) is None  # not finished
  with open(tmp_path / 'metrics.jsonl', 'a', encoding='utf-8') as f:
    f.write(json.dumps({'step': 400, 'eval/accuracy': 0.75}) + '\n')
  assert curve.dev_accuracy(str(tmp_path), 400) == 0.75


def test_an_unswept_budget_takes_the_recorded_rate_of_the_largest_swept():
  results = {
      '1000': dict(learning_rate=1e-4, heldout_accuracy=0.70, chosen_at='1000'),
      '5000': dict(learning_rate=3e-4, heldout_accuracy=0.80, chosen_at='5000')}
  swept = ['1000', '5000']
  assert curve.recorded_rate(results, swept, 'all') == (3e-4, 0.80, '5000')
  del results['5000']
  assert curve.recorded_rate(results, swept, 'all') == (1e-4, 0.70, '1000')
  assert curve.recorded_rate(results, ['5000'], 'all') == (None, None, None)
  # a budget that reused another's rate is no source of one
  results['5000'] = dict(learning_rate=1e-3, heldout_accuracy=0.7,
                         chosen_at='1000')
  assert curve.recorded_rate(results, swept, 'all')[0] == 1e-4


def test_all_labels_are_the_train_files_rows_less_the_held_out_slice(
    tmp_path, monkeypatch):
  (tmp_path / 'sst2').mkdir()
  (tmp_path / 'sst2' / 'train.tsv').write_text(
      'sentence\tlabel\n' + 'a fine film\t1\n' * 2345 + '\n')
  monkeypatch.setenv('DATA_DIR', str(tmp_path))
  assert curve.label_count('all') == 345  # 2,345 rows less 2,000 held out
  assert curve.label_count('5000') == 5000


def test_the_table_and_the_figure_come_from_each_arms_results(tmp_path):
  results = {'1000': dict(labels=1000, learning_rate=1e-3, chosen_at='1000',
                          heldout_accuracy=0.7, dev_accuracy=[0.7, 0.72, 0.74],
                          mean=0.72, spread=0.04, init_from='')}
  assert '| 1,000 | 0.001 (1000) | 70.00 | 70.00, 72.00, 74.00 | 72.00 | ' \
         '4.00 |' in curve.table('random', results)
  (tmp_path / 'random').mkdir()
  (tmp_path / 'random' / 'results.json').write_text(json.dumps(results))
  out = tmp_path / 'curve.png'
  subprocess.run([sys.executable, str(ROOT / 'experiments' /
                                      'label_budget_curve.py'), '--plot',
                  f'--workdir={tmp_path}', f'--output={out}'], check=True)
  assert out.stat().st_size > 10_000


@pytest.mark.parametrize('args, error', [
    (['--arm=pretrained'], '--init_from is given with --arm=pretrained'),
    (['--arm=random', '--init_from=x'], '--init_from is given with'),
    (['--arm=random', '--budgets=10'], "--budgets: '10' is not one of"),
])
def test_bad_arguments_are_one_line(tmp_path, args, error):
  done = subprocess.run([sys.executable, str(ROOT / 'experiments' /
                                             'label_budget_curve.py'),
                         f'--workdir={tmp_path}'] + args,
                        capture_output=True, text=True)
  assert done.returncode == 2 and error in done.stderr.splitlines()[-1]
