"""experiments/gpu_suite.py end to end on the CPU with tiny shapes and
without the PyTorch rows, so that the GPU script cannot break unnoticed
between GPU windows; and its batch search on a compiled tiny step."""
import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
from experiments import gpu_suite  # pylint: disable=g-import-not-at-top


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  out = tmp_path_factory.mktemp('gpu_suite')
  proc = subprocess.run(
      [sys.executable, str(REPO / 'experiments' / 'gpu_suite.py'), '--tiny',
       '--no_torch', '--steps=2', '--warmup=1', f'--out={out}'],
      cwd=REPO, capture_output=True, text=True, timeout=900)
  return proc, out


def test_every_row_but_pytorch_runs_and_is_written(tiny_run):
  proc, out = tiny_run
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  results = json.loads((out / 'gpu_suite.json').read_text())
  rows = results['rows']
  expected = [n for n, spec in gpu_suite.ROWS.items() if spec['kind'] != 'torch']
  assert list(rows) == expected
  for name, r in rows.items():
    if name == 'attention_4096_cudnn':  # cuDNN needs a GPU
      assert r['status'] == 'skipped', r
    else:
      assert r['status'] == 'ok', (name, r.get('note'), r.get('log_tail'))
  assert rows['matmul']['flops_per_s'] > 0
  for name in ('gpt2_small', 'bert_base', 'gpt2_medium', 'llama_1b',
               'attention_4096_einsum', 'attention_4096_blockwise'):
    r = rows[name]
    assert len(r['step_times_s']) == 2
    assert r['tokens_per_s'] == pytest.approx(r['batch'] * r['seq'] /
                                              r['step_s'])
    assert r['mfu_measured'] == pytest.approx(
        r['model_flops'] / r['step_s'] / rows['matmul']['flops_per_s'])
    assert 0 < r['loss'] < 10
  # The attention rows differ only in their kernel: same work, same loss.
  assert (rows['attention_4096_einsum']['model_flops'] ==
          rows['attention_4096_blockwise']['model_flops'])
  assert rows['attention_4096_blockwise']['loss'] == pytest.approx(
      rows['attention_4096_einsum']['loss'], rel=1e-2)
  assert rows['llama_1b']['remat_policy'] == 'save_dots'
  assert 'skipped [4]' in rows['gpu_tests']['note'].lower() or (
      '4 skipped' in rows['gpu_tests']['note']), rows['gpu_tests']
  table = (out / 'gpu_suite.md').read_text().splitlines()
  assert table[0].startswith('GPU: ')
  body = [line for line in table if line.startswith('| ') and
          not line.startswith('| row')]
  assert [line.split(' | ')[0][2:] for line in body] == expected


def test_only_picks_rows_and_unknown_rows_fail_in_one_line(tmp_path):
  args = gpu_suite.parse_args(['--only=matmul,gpt2_small,torch_bert_base_eager',
                               '--no_torch', f'--out={tmp_path}'])
  assert args.rows == ['matmul', 'gpt2_small']
  proc = subprocess.run(
      [sys.executable, str(REPO / 'experiments' / 'gpu_suite.py'),
       '--only=gpt3', f'--out={tmp_path}'], capture_output=True, text=True)
  assert proc.returncode == 2
  assert "--only: unknown rows ['gpt3']" in proc.stderr
  assert 'Traceback' not in proc.stderr


def test_a_row_that_fails_is_recorded_and_the_suite_goes_on(tmp_path):
  """A cut-off or crashed row keeps the rows before it and says why."""
  args = gpu_suite.parse_args(['--only=gpu_tests', f'--out={tmp_path}',
                               '--row_timeout_s=0.01'])
  results = gpu_suite.run_suite(args)
  assert results['rows']['gpu_tests']['status'] == 'failed'
  assert 'timed out' in results['rows']['gpu_tests']['note']
  saved = json.loads((tmp_path / 'gpu_suite.json').read_text())
  assert saved['rows']['gpu_tests']['status'] == 'failed'
  assert '| gpu_tests |' in (tmp_path / 'gpu_suite.md').read_text()


def test_fit_batch_stays_under_the_limit_and_uses_it():
  """The search on a tiny GPT-2 step: with room for about 40 rows it picks
  a batch whose compiled footprint is under the limit, and more than the
  8-row probe."""
  from experiments import benchmark  # pylint: disable=g-import-not-at-top
  args = gpu_suite.parse_args(['--tiny'])
  config, _, _ = gpu_suite.row_config('gpt2_small', args)
  config.batch_size = 8
  fixed, temp = gpu_suite.footprint(benchmark.compile_step(config)[2])
  limit = fixed + 5 * temp  # temporaries of ~40 rows
  compiled_step, note = gpu_suite.fit_batch(config, limit)
  fixed_b, temp_b = gpu_suite.footprint(compiled_step[2])
  assert fixed_b + temp_b <= limit, note
  assert 8 < config.batch_size <= 40, note
  assert config.batch_size % 8 == 0
  assert compiled_step[3][1]['inputs'].shape[0] == config.batch_size
