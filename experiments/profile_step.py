r"""Where a training step's time goes, op by op (XLA:CPU thunk times).

Compiles the benchmark's step (experiments/benchmark.py: same config flags,
synthetic batches), traces `--steps` steps with jax.profiler and prints the
ops that took the most time per step, grouped by what they are: library
matmuls (__ynn_fusion etc.), XLA's own dot loop (the slow forms), converts,
transposes/copies and other elementwise fusions.

  python experiments/profile_step.py \
      --config=configs/bert_pretraining.py:size=base,data=wikitext2 \
      --config.data.max_predictions=0 --config.model.dtype=bfloat16 \
      --batch_size 8 --seq_len 128 --steps 2

Thunks may overlap on several cores, so the sum can exceed the step time.
"""
import collections
import copy
import glob
import pathlib
import re
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import benchmark  # pylint: disable=g-import-not-at-top

_TOP = flags.DEFINE_integer('top', 25, 'Ops to list.')
_DUMP_HLO = flags.DEFINE_string(
    'dump_hlo', None, 'Also write the compiled step\'s optimized HLO text '
    'here, to look up what a listed op computes.')


def instructions(hlo_text: str) -> dict:
  """name -> the text of its defining line, for the entry computation's ops
  (what the profiler names)."""
  table = {}
  for line in hlo_text.splitlines():
    m = re.match(r'\s*(?:ROOT )?%?([\w.\-]+) = (.*)', line)
    if m:
      table.setdefault(m.group(1), m.group(2))
  return table


def category(text: str) -> str:
  """A coarse class of one op's HLO line."""
  if '__ynn_fusion' in text or '__xnn_fusion' in text or 'onednn' in text:
    return 'library matmul'
  if re.match(r'\S+ dot\(', text):
    return 'XLA dot loop'
  if 'convert' in text.split('calls=')[-1][:40] or re.match(
      r'\S+ convert\(', text):
    return 'convert'
  if 'transpose' in text or 'copy' in text:
    return 'transpose/copy'
  if 'while(' in text or 'call(' in text:
    return 'loop/call'
  return 'other'


def shape_of(text: str) -> str:
  m = re.match(r'(\S+)', text)
  return m.group(1) if m else ''


def op_times(trace_dir: str) -> collections.Counter:
  """hlo_op name -> total nanoseconds over the traced steps."""
  path = glob.glob(trace_dir + '/**/*.xplane.pb', recursive=True)[0]
  totals = collections.Counter()
  for plane in jax.profiler.ProfileData.from_file(path).planes:
    for line in plane.lines:
      for event in line.events:
        stats = dict(event.stats)
        if 'hlo_op' in stats:
          totals[stats['hlo_op']] += event.duration_ns
  return totals


def main(argv):
  del argv
  config = benchmark.apply_shapes(benchmark._CONFIG.value,
                                  benchmark._BATCH.value,
                                  benchmark._SEQ_LEN.value)
  config = copy.deepcopy(config)
  config.parallelism = 'mesh'
  _, _, compiled, (state, batch, rng), _ = benchmark.compile_step(config)
  for _ in range(max(benchmark._WARMUP.value, 1)):
    state, _ = compiled(state, batch, rng)
  jax.block_until_ready(state)
  steps = benchmark._STEPS.value
  trace_dir = tempfile.mkdtemp()
  start = time.perf_counter()
  with jax.profiler.trace(trace_dir):
    for _ in range(steps):
      state, _ = compiled(state, batch, rng)
      jax.block_until_ready(state)
  wall_ms = (time.perf_counter() - start) * 1e3 / steps
  hlo_text = compiled.as_text()
  if _DUMP_HLO.value:
    pathlib.Path(_DUMP_HLO.value).write_text(hlo_text)
  hlo = instructions(hlo_text)
  totals = op_times(trace_dir)
  by_class = collections.Counter()
  for name, ns in totals.items():
    by_class[category(hlo.get(name, ''))] += ns
  print(f'jax {jax.__version__}, dtype {config.model.dtype}: '
        f'{wall_ms:,.0f} ms/step wall (traced), '
        f'{sum(totals.values()) / 1e6 / steps:,.0f} ms/step in ops')
  print('\n| class | ms/step |\n|---|---:|')
  for name, ns in by_class.most_common():
    print(f'| {name} | {ns / 1e6 / steps:,.1f} |')
  print('\n| op | class | shape | ms/step |\n|---|---|---|---:|')
  for name, ns in totals.most_common(_TOP.value):
    text = hlo.get(name, '')
    print(f'| {name} | {category(text)} | {shape_of(text)} | '
          f'{ns / 1e6 / steps:,.1f} |')


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  app.run(main)
