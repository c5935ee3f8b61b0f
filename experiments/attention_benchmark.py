r"""Attention cost against sequence length, per-device memory, and mesh
shapes: the benchmark of issue 14. Nothing is asserted or recorded; record
figures with their command in performance.md.

  python experiments/attention_benchmark.py \
      --config=configs/causal_lm.py:size=small_char
  python experiments/attention_benchmark.py --config=configs/llama_small.py \
      --impls=einsum,blockwise,cudnn --config.model.dtype=bfloat16  # GPU
  python experiments/attention_benchmark.py --config=configs/causal_lm.py \
      --quick                           # end to end in a minute or two

Three markdown tables, each from train.py's step (`benchmark.compile_step`:
`training.steps.train_step` jitted over a mesh, the state donated, synthetic rows):
  seq     one device; for each of --seq_lens and each of --impls, batches
          of --tokens_per_step tokens (batch = tokens / seq): step time
          (median of --steps after --warmup), model FLOPs per step
          (training/flops.py: the full s x s scores whatever the impl, so
          every impl is credited the same work), tokens/s, MFU against
          benchmark.py's peak (data sheet on GPU, a timed matmul on CPU),
          XLA's temporaries, and time and FLOPs relative to the first row
          of the impl: the table of the issue.
  memory  one device, --memory_seq: the compiled step's memory_analysis()
          (arguments, outputs, temporaries, and their sum less what the
          donated state aliases), per impl, without running it.
  mesh    8 simulated CPU devices (a child process with
          XLA_FLAGS=--xla_force_host_platform_device_count=8), --mesh_seq:
          steps/s and per-device memory for each of --meshes over (data,
          fsdp, tensor), with the caveat of what such devices can show.
--steps and --warmup are benchmark.py's flags. --quick shrinks the model
(1 layer, d_model 32, blocks of 16) and every size, to check the script,
not to measure.
"""
import copy
import os
import pathlib
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags
from absl import logging
import jax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import benchmark  # pylint: disable=g-import-not-at-top
from cli import command  # benchmark.py put the repository on the path
from errors import UserError
from tasks import get_task
from training import flops

FLAGS = flags.FLAGS
_SEQ_LENS = flags.DEFINE_list('seq_lens', '128,256,512,1024,2048,4096',
                              'Sequence lengths of the seq table.')
_TOKENS = flags.DEFINE_integer('tokens_per_step', 8192,
                               'Tokens per step at every length.')
_IMPLS = flags.DEFINE_list('impls', 'einsum,blockwise',
                           'model.attention_impl values to compare.')
_MEMORY_SEQ = flags.DEFINE_integer('memory_seq', 4096,
                                   'Sequence length of the memory table.')
_MESHES = flags.DEFINE_list('meshes', '8x1x1,2x4x1,2x2x2,1x1x8',
                            'Mesh shapes data x fsdp x tensor (8 devices).')
_MESH_SEQ = flags.DEFINE_integer('mesh_seq', 512,
                                 'Sequence length of the mesh table.')
_PARTS = flags.DEFINE_list('parts', 'seq,memory,mesh', 'Tables to print.')
_QUICK = flags.DEFINE_bool('quick', False, 'Tiny model and sizes.')

_CHILD = 'ATTENTION_BENCHMARK_MESH_CHILD'  # set in the mesh child process
MESH_CAVEAT = (
    'Caveat: the 8 simulated devices are one CPU: they share its cores and '
    'memory, run their shards one after another or interleaved, and a '
    'collective is a copy in memory, not a transfer over NVLink or a '
    'network. Steps/s here show that each mesh compiles and runs and what '
    'the SPMD program adds in collectives and partitioning; they cannot '
    'show the speed-up of real devices, the cost of real communication or '
    'its overlap with compute. Per-device memory is XLA\'s plan for one '
    'device and does carry over.')


# --quick: sizes for 2 CPU cores in a minute, for the flags not given.
QUICK = dict(seq_lens=['32', '64', '128'], tokens_per_step=256,
             memory_seq=128, mesh_seq=32, steps=2, warmup=1)


def sizes() -> dict:
  """{flag name: value} of the sizes, --quick's where a flag is not given."""
  return {name: QUICK[name] if _QUICK.value and not FLAGS[name].present
          else FLAGS[name].value for name in QUICK}


def base(config):
  """The config every row starts from: a causal LM without attention
  dropout (blockwise has none), 1 layer of width 32 with --quick."""
  if config.task != 'causal_lm':
    raise UserError(f'--config has task {config.task!r}; this benchmark '
                     'times the causal LM (causal_lm)')
  config = copy.deepcopy(config)
  config.model.attention_dropout_rate = 0.0
  if _QUICK.value:
    config.model.update(num_layers=1, d_model=32, num_heads=4,
                        num_kv_heads=0, d_ff=64, vocab_size=64,
                        attention_block_size=16)  # several blocks
  return config


def at(config, seq: int, batch: int, impl: str, mesh=None):
  """`config` at `seq` x `batch`, attention `impl`; one device, or all of
  them as `mesh` = (data, fsdp, tensor)."""
  config = benchmark.apply_shapes(config, batch, seq)
  config.model.attention_impl = impl
  config.model.max_len = max(config.model.max_len, seq)
  config.parallelism = 'mesh'
  config.num_devices = 0 if mesh else 1
  config.mesh.update(dict(zip(('data', 'fsdp', 'tensor'), mesh or (-1, 1, 1))))
  return config


def run(config, steps: int, warmup: int) -> dict:
  """Compiles train.py's step for `config` and times `steps` of it (none:
  compile only) -> {compile_s, step_s, memory (memory_analysis())}."""
  _, _, compiled, (state, batch, rng), compile_s = benchmark.compile_step(
      config)
  times = []
  for i in range(warmup + steps if steps else 0):
    start = time.perf_counter()
    state, _ = compiled(state, batch, rng)
    jax.block_until_ready(state)
    if i >= warmup:
      times.append(time.perf_counter() - start)
  return dict(compile_s=compile_s, memory=compiled.memory_analysis(),
              step_s=statistics.median(times) if times else float('nan'))


def model_flops(config) -> float:
  task = get_task(config)
  return task.train_flops(task.model_config, config, config.batch_size)


def mib(n) -> str:
  return f'{n / 2 ** 20:,.1f}'


def seq_table(config, s: dict, peak: float, out):
  out('| impl | seq | batch | step ms | model GFLOP | tokens/s | MFU | '
      'XLA temp MiB | step vs first | FLOPs vs first |')
  out('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for impl in _IMPLS.value:
    first = None
    for seq in map(int, s['seq_lens']):
      row_config = at(config, seq, max(s['tokens_per_step'] // seq, 1), impl)
      r = run(row_config, s['steps'], s['warmup'])
      work = model_flops(row_config)
      first = first or (r['step_s'], work)
      batch = row_config.batch_size
      out(f'| {impl} | {seq} | {batch} | {r["step_s"] * 1e3:,.1f} | '
          f'{work / 1e9:,.2f} | {batch * seq / r["step_s"]:,.0f} | '
          f'{flops.mfu(work, r["step_s"], peak):.1%} | '
          f'{mib(r["memory"].temp_size_in_bytes)} | '
          f'{r["step_s"] / first[0]:.2f} | {work / first[1]:.2f} |')


def memory_table(config, s: dict, out):
  seq = s['memory_seq']
  batch = max(s['tokens_per_step'] // seq, 1)
  out(f'\nPer-device memory of the compiled step at seq {seq}, batch {batch}'
      ' (memory_analysis(); not run):\n')
  out('| impl | arguments MiB | outputs MiB | temporaries MiB | '
      'donated (aliased) MiB | total MiB |')
  out('|---|---:|---:|---:|---:|---:|')
  for impl in _IMPLS.value:
    m = run(at(config, seq, batch, impl), 0, 0)['memory']
    total = (m.argument_size_in_bytes + m.output_size_in_bytes +
             m.temp_size_in_bytes - m.alias_size_in_bytes)
    out(f'| {impl} | {mib(m.argument_size_in_bytes)} | '
        f'{mib(m.output_size_in_bytes)} | {mib(m.temp_size_in_bytes)} | '
        f'{mib(m.alias_size_in_bytes)} | {mib(total)} |')


def mesh_table(config, s: dict, out):
  """In this process if it has 8 CPU devices, else in a child that does."""
  if jax.default_backend() != 'cpu' or jax.device_count() != 8:
    if os.environ.get(_CHILD):
      raise RuntimeError('the mesh child process did not get 8 CPU devices')
    argv = [a for a in sys.argv[1:] if not a.startswith('--parts')]
    env = dict(os.environ, JAX_PLATFORMS='cpu', **{_CHILD: '1'})
    env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                        ' --xla_force_host_platform_device_count=8').strip()
    sys.stdout.flush()
    subprocess.run([sys.executable, os.path.abspath(__file__), *argv,
                    '--parts=mesh'], env=env, check=True)
    return
  seq, impl = s['mesh_seq'], _IMPLS.value[0]
  batch = max(s['tokens_per_step'] // seq, 8) // 8 * 8  # over 8 devices
  out(f'\nMeshes on 8 simulated CPU devices, seq {seq}, batch {batch}, '
      f'{impl} attention:\n')
  out('| data x fsdp x tensor | compile s | step ms | steps/s | vs first | '
      'per-device arguments MiB | per-device temporaries MiB |')
  out('|---|---:|---:|---:|---:|---:|---:|')
  first = None
  for shape in _MESHES.value:
    mesh = tuple(int(n) for n in shape.split('x'))
    r = run(at(config, seq, batch, impl, mesh), s['steps'], s['warmup'])
    first = first or r['step_s']
    out(f'| {shape} | {r["compile_s"]:.1f} | {r["step_s"] * 1e3:,.1f} | '
        f'{1 / r["step_s"]:,.2f} | {first / r["step_s"]:.2f} | '
        f'{mib(r["memory"].argument_size_in_bytes)} | '
        f'{mib(r["memory"].temp_size_in_bytes)} |')
  out('\n' + MESH_CAVEAT)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  out = lambda line: print(line, flush=True)
  config, s = base(benchmark._CONFIG.value), sizes()  # pylint: disable=protected-access
  unknown = set(_PARTS.value) - {'seq', 'memory', 'mesh'}
  if unknown:
    raise app.UsageError(f'--parts has unknown {sorted(unknown)}; the parts '
                         'are seq, memory, mesh')
  if os.environ.get(_CHILD):  # the parent printed the header
    mesh_table(config, s, out)
    return
  cfg = get_task(config).model_config
  machine = (jax.devices()[0].device_kind if benchmark.on_gpu()
             else benchmark.cpu_description())
  out(f'\nCausal LM: {cfg.num_layers} layers, d_model {cfg.d_model}, heads '
      f'{cfg.num_heads} (kv {cfg.kv_heads}), d_ff {cfg.d_ff}, vocab '
      f'{cfg.vocab_size}, dtype {cfg.dtype}, blocks of '
      f'{cfg.attention_block_size}; jax {jax.__version__} on {machine}; '
      f'{benchmark.load_text()} at the start\n')
  if 'seq' in _PARTS.value:
    peak, source = benchmark.peak_flops()
    out(f'{s["tokens_per_step"]} tokens a step; peak {peak / 1e9:,.0f} GFLOP/s '
        f'({source})\n')
    seq_table(config, s, peak, out)
  if 'memory' in _PARTS.value:
    memory_table(config, s, out)
  if 'mesh' in _PARTS.value:
    mesh_table(config, s, out)
  out(f'\n{benchmark.load_text()} at the end; '
      f'{time.strftime("%Y-%m-%d %H:%M")}')


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  command.run(lambda argv: command.reporting_user_errors(lambda: main(argv)))
