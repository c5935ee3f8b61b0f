"""Model FLOPs (training/flops.py) against XLA's count, and the benchmark
script end to end on a tiny config."""
import os
import pathlib
import re
import subprocess
import sys

from absl import flags
from absl.testing import flagsaver
import pytest

import conftest
from configs import bert_pretraining, causal_lm, default
from training import flops
from models.config import ModelConfig

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from experiments import benchmark  # pylint: disable=g-import-not-at-top,wrong-import-position

needs_torch = conftest.requires(torch=conftest.optional_module('torch'))


def _tiny(get_config):
  """d_model 128, 2 layers, vocab 256, batch 8 x 32 tokens, 1 device."""
  config = benchmark.apply_shapes(get_config(), 8, 32)
  config.model.update(d_model=128, d_ff=512, num_heads=4, num_layers=2,
                      vocab_size=256, max_len=64, dropout_rate=0.0,
                      attention_dropout_rate=0.0)
  config.num_devices = 1
  return config


@pytest.mark.parametrize('get_config', [default.get_config,
                                        causal_lm.get_config,
                                        bert_pretraining.get_config],
                         ids=['encoder_decoder', 'decoder_lm', 'bert'])
def test_model_flops_match_xla_cost_analysis(get_config):
  """XLA also counts softmax, LayerNorm, GELU and Adam, so its figure is a
  little higher: the matmul count must be within [0, 8%] below it. A missing
  matmul (e.g. the decoder's cross-attention k/v, 8% of the encoder-decoder
  here) or a wrong factor falls outside."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(['test'])
  r = benchmark.time_training(_tiny(get_config), steps=1, warmup=0,
                              peak=1e12)
  assert r['model_flops'] <= r['xla_flops'] <= 1.08 * r['model_flops'], r


def test_closed_form_6n_plus_attention():
  cfg = ModelConfig(vocab_size=1000, d_model=64, num_heads=4, d_ff=256,
                    num_layers=3, max_len=128)
  shape = flops.StepShape(seq_len=128)
  assert flops.train_flops_per_token(cfg, 'decoder_lm', shape) == (
      flops.closed_form_per_token(cfg, 128))
  # 6N with N = 3 * (4 * 64^2 + 2 * 64 * 256) + 64 * 1000, + 12 L d s.
  assert flops.closed_form_per_token(cfg, 128) == 6 * 211_456 + 294_912


def test_bert_mlm_head_only_at_masked_positions():
  cfg = ModelConfig(vocab_size=1000, d_model=64, num_heads=4, d_ff=256,
                    num_layers=1)
  full = flops.forward_flops(cfg, 'bert_pretraining',
                            flops.StepShape(seq_len=32))
  some = flops.forward_flops(cfg, 'bert_pretraining', flops.StepShape(
      seq_len=32, mlm_positions=5))
  assert full - some == 2 * 27 * (64 * 64 + 64 * 1000)


def test_gpu_peaks():
  assert flops.gpu_peak_flops('NVIDIA H100 80GB HBM3') == 989e12
  assert flops.gpu_peak_flops('NVIDIA H100 PCIe') == 756e12
  assert flops.gpu_peak_flops('cpu') is None


def test_benchmark_script_runs_end_to_end(tmp_path):
  env = dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu')
  out = tmp_path / 'rows.md'
  result = subprocess.run(
      [sys.executable, 'experiments/benchmark.py',
       '--config=configs/default.py', '--batch_size', '4', '--seq_len', '8',
       '--steps', '2', '--warmup', '1', '--peak_size', '256',
       f'--results_file={out}'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  rows = out.read_text()
  for name in ('ours train', 'ours decode greedy', 'ours decode beam 4'):
    assert f'| {name}' in rows, rows
  assert 'MFU' in rows


# The median of each contestant's three rounds is none of its first, its
# last or its fastest, so a table row that took any of those would fail.
ROUND_MS = {'ours train float32': (30.0, 10.0, 20.0),
            'torch float32': (14.0, 17.0, 11.0),
            'torch bf16 autocast': (25.0, 35.0, 45.0)}


@needs_torch
def test_own_processes_rounds_report_the_median_round(monkeypatch):
  """--compare_torch --own_processes --rounds 3: the contestants run in
  turn (A B C, A B C, A B C), each table row is the contestant's median
  round and the per-round times are listed in the order run. The children
  are stand-ins with known step times (nine real ones made this test the
  suite's slowest: experiments/test_suite.md);
  test_own_process_child_times_its_contestant runs a real one."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(['test'])
  order = []

  def child(label):
    order.append(label)
    key = label if label.startswith('ours') else (
        'torch ' + label.split(' train ')[1])
    return dict(step_s=ROUND_MS[key][order.count(label) - 1] / 1e3)

  monkeypatch.setattr(benchmark, 'in_own_process', child)
  lines = []
  with flagsaver.flagsaver(compare_torch=True, own_processes=True, rounds=3):
    results, notes = benchmark.side_by_side(_tiny(default.get_config), 1e12,
                                            None, lines.append)
  labels = list(results)
  assert len(labels) == 3 and order == labels * 3
  text = '\n'.join(lines + notes)
  per_round = re.findall(r'^(.+): step ms per round, in the order run: (.+)$',
                         text, re.M)
  assert [label for label, _ in per_round] == labels
  for (label, times), expected in zip(per_round, ROUND_MS.values()):
    assert [float(t) for t in times.split(', ')] == list(expected)
    step_ms = re.search(r'^\| ' + re.escape(label) + r' \|[^|]*\| ([\d,.]+) \|',
                        text, re.M)
    assert step_ms, (label, text)
    assert float(step_ms.group(1)) == sorted(expected)[1]


@needs_torch
def test_own_process_child_times_its_contestant(monkeypatch):
  """The child process --own_processes starts for one contestant (here
  PyTorch under bf16 autocast, which no other test trains): it trains that
  one alone and hands back its step time, tokens/s and FLOPs."""
  monkeypatch.setenv('XLA_FLAGS', '')  # one device, as the script runs
  monkeypatch.setattr(sys, 'argv', [
      'benchmark.py', f'--config={REPO}/configs/default.py',
      '--batch_size', '4', '--seq_len', '8', '--steps', '1', '--warmup', '0',
      '--peak_size', '128', '--nodecode', '--compare_torch',
      '--own_processes', '--rounds', '3'])
  config = benchmark.apply_shapes(default.get_config(), 4, 8)
  label = next(l for l in benchmark.contestants(config)
               if l.endswith('train bf16 autocast'))
  result = benchmark.in_own_process(label)
  shape = benchmark.step_shape(config)
  assert shape.tokens == 16  # 8 source + 8 target tokens a row
  assert result['step_s'] > 0
  assert result['tokens_per_s'] == pytest.approx(4 * 16 / result['step_s'])
  assert result['model_flops'] == flops.train_flops(
      benchmark.task_model_config(config), 'encoder_decoder', shape, 4)
