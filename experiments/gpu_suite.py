r"""GPU figures in one command: MFU, tokens/s and memory of the models
researchers train on accelerators, against PyTorch at the same shapes.

  python experiments/gpu_suite.py --out=/tmp/gpu_suite  # rows in ROWS order
  python experiments/gpu_suite.py --only=llama_1b,gpu_tests  # these, in order
  python experiments/gpu_suite.py --tiny --no_torch  # CPU: the script's test

Set-up on a GPU image that has jax (CUDA), flax, optax, orbax, torch and
transformers but lacks ml_collections and grain (the lent H200 machine:
their wheels are in ../shared/wheels/py312-x86_64, see its README; copy
that folder into a folder of the checkout that git ignores, e.g.
`.gpu_wheels`, which must travel to the GPU machine):

  python3 -m pip install -q --no-index --no-deps --target /tmp/site \
      .gpu_wheels/*.whl && export PYTHONPATH=/tmp/site
  python3 experiments/gpu_suite.py --out=$OUT

Every row together takes about 14 minutes on one H200 (the rows' own
times, recorded in performance.md, are ROWS' `seconds`), more than one
lent window: the default --budget_s=480 runs the rows in the order of
ROWS, most needed first, skips those that no longer fit, and the next
window runs the rest with --only.

It writes `<out>/gpu_suite.md` (a markdown table) and
`<out>/gpu_suite.json` (the raw figures), both rewritten after every row,
so a run cut off by its time limit keeps what it measured. Rows run in
the order of ROWS, each in its own process (so that each row's peak memory
is its own, JAX's and PyTorch's allocators never share the device, and a
crash or an out-of-memory ends one row, not the suite); a row whose
expected time exceeds what is left of --budget_s is skipped and says so.

Every row is bf16 compute with float32 parameters and Adam state, with
dropout off in both contestants (cuDNN attention has no attention
dropout; nanoGPT and MaxText pre-train without dropout too). Per row:
  batch       the row's own (GPT-2 small's 224 is the largest that fit
              an H200 on 2026-12-04), --batches to change it, or with
              --search_batch the largest that fits (`fit_batch`: the
              compiled step's memory_analysis at 8 rows gives the bytes
              per row, the batch is the most rows under
              --memory_fraction of the device's memory, rounded down to
              a multiple of 8, and checked by compiling it)
  step ms     the median of --steps timed steps after --warmup
  tokens/s    batch x sequence / step
  MFU         training/flops.py's model FLOPs per step over the step time,
              against the data-sheet dense bf16 peak (flops.GPU_PEAK_BF16)
              and against an 8192^3 bf16 matmul timed in the same run
              (row `matmul`); PyTorch rows are credited the same model
              FLOPs as ours (HF's BERT computes its MLM logits at every
              position, ours at the masked ones: the same model work)
  memory      the device's peak bytes in use (JAX: memory_stats; PyTorch:
              torch.cuda.max_memory_allocated)
The PyTorch rows are Hugging Face transformers' GPT2LMHeadModel and
BertForPreTraining under torch.autocast(bf16), attn_implementation='sdpa',
AdamW(fused=True), eager and under torch.compile, at our row's batch (or
the largest half of it that fits). Row `gpu_tests` runs the suite's
GPU-only tests (tests/gpu_tests.sh). Figures: experiments/performance.md.
"""
import argparse
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]

# name -> what the row measures. kind: 'matmul' | 'jax' | 'torch' | 'tests'.
# config: (configs module, get_config arg); seq: sequence length;
# batch: 0 = the largest that fits; overrides: config fields.
ROWS = {
    'matmul': dict(kind='matmul', seconds=15),
    'gpt2_small': dict(kind='jax', config=('gpt2_small', None), seq=1024,
                       batch=224, searchable=True,
                       overrides={'model.attention_impl': 'cudnn'},
                       seconds=90),
    'torch_gpt2_small_eager': dict(kind='torch', like='gpt2_small',
                                   compile=False, seconds=40),
    'bert_base': dict(kind='jax', config=('bert_pretraining', 'size=base'),
                      seq=512, overrides={
                          'model.attention_impl': 'cudnn',
                          # size=base with data=synthetic shrinks both.
                          'model.vocab_size': 30522, 'model.max_len': 512,
                          'data.max_predictions': 80},
                      batch=256, searchable=True, seconds=70),
    'torch_bert_base_eager': dict(kind='torch', like='bert_base',
                                  compile=False, seconds=30),
    'gpt2_medium': dict(kind='jax', config=('gpt2_medium', None), seq=1024,
                        batch=64, searchable=True,
                        overrides={'model.attention_impl': 'cudnn'},
                        seconds=105),
    'torch_gpt2_small_compile': dict(
        kind='torch', like='gpt2_small', batch_from='torch_gpt2_small_eager',
        compile=True, seconds=120),
    'llama_1b': dict(kind='jax', config=('llama_1b', None), seq=2048,
                     batch=8, overrides={}, seconds=110),
    'attention_4096_einsum': dict(
        kind='jax', config=('gpt2_small', None), seq=4096, batch=4,
        overrides={'model.attention_impl': 'einsum', 'model.max_len': 4096},
        seconds=30),
    'attention_4096_blockwise': dict(
        kind='jax', config=('gpt2_small', None), seq=4096, batch=4,
        overrides={'model.attention_impl': 'blockwise',
                   'model.attention_block_size': 512, 'model.max_len': 4096},
        seconds=30),
    'attention_4096_cudnn': dict(
        kind='jax', config=('gpt2_small', None), seq=4096, batch=4,
        overrides={'model.attention_impl': 'cudnn', 'model.max_len': 4096},
        needs_gpu=True, seconds=30),
    'gpu_tests': dict(kind='tests', seconds=60),
    'torch_bert_base_compile': dict(
        kind='torch', like='bert_base', batch_from='torch_bert_base_eager',
        compile=True, seconds=120),
}

# --tiny: shapes a CPU runs in seconds, to test the script, not to measure.
TINY_MODEL = {'model.num_layers': 1, 'model.d_model': 64,
              'model.num_heads': 2, 'model.d_ff': 128, 'model.vocab_size': 256}
TINY_SEQ = 32
TINY_BATCH = 2

HEADER = ('| row | batch x seq | step ms | tokens/s | MFU (data sheet) | '
          'MFU (measured matmul) | peak memory GiB | notes |')
RULE = '|---|---|---:|---:|---:|---:|---:|---|'


# ------------------------------------------------------------ the parent --
def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default=os.environ.get('OUT', '/tmp/gpu_suite'),
                      help='folder for gpu_suite.md and gpu_suite.json')
  parser.add_argument('--only', default='',
                      help='comma-separated rows (default: all), of: '
                      + ', '.join(ROWS))
  parser.add_argument('--no_torch', action='store_true',
                      help='leave out the PyTorch rows')
  parser.add_argument('--tiny', action='store_true',
                      help='tiny shapes, to test the script on a CPU')
  parser.add_argument('--steps', type=int, default=10,
                      help='timed steps per row (the median is reported)')
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument('--budget_s', type=float, default=480,
                      help='skip rows whose expected seconds exceed what is '
                      'left of this')
  parser.add_argument('--row_timeout_s', type=float, default=240)
  parser.add_argument('--batches', default='',
                      help='batches other than the rows\' own, e.g. '
                      'gpt2_medium=96,bert_base=128')
  parser.add_argument('--search_batch', action='store_true',
                      help='find the largest batch that fits for the rows '
                      'that allow it (fit_batch: two more compiles a row, '
                      'about 110 s on an H200)')
  parser.add_argument('--memory_fraction', type=float, default=0.85,
                      help='share of device memory the batch search fills')
  parser.add_argument('--child', default='', help=argparse.SUPPRESS)
  parser.add_argument('--child_json', default='', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.steps < 1 or args.warmup < 1:
    parser.error(f'--steps={args.steps} and --warmup={args.warmup} must be '
                 'at least 1')
  names = [n for n in args.only.split(',') if n] or list(ROWS)
  unknown = [n for n in names if n not in ROWS]
  if unknown:
    parser.error(f'--only: unknown rows {unknown}; rows are: '
                 + ', '.join(ROWS))
  if args.no_torch:
    names = [n for n in names if ROWS[n]['kind'] != 'torch']
  args.rows = names
  try:
    args.batch_of = {name: int(batch) for name, batch in (
        item.split('=') for item in args.batches.split(',') if item)}
  except ValueError:
    parser.error(f'--batches={args.batches!r}: expected row=batch,...')
  wrong = [n for n, b in args.batch_of.items()
           if n not in ROWS or ROWS[n]['kind'] not in ('jax', 'torch') or b < 1]
  if wrong:
    parser.error(f'--batches: {wrong} are not model rows with a batch >= 1')
  return args


def run_suite(args) -> dict:
  """Runs the rows in order, each in a child process; returns the results
  and rewrites the table and the JSON after each row."""
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  results = {'environment': environment(), 'rows': {}}
  start = time.monotonic()
  for name in args.rows:
    left = args.budget_s - (time.monotonic() - start)
    if ROWS[name]['seconds'] > left and not args.tiny:
      results['rows'][name] = dict(status='skipped', note=(
          f'budget: {left:.0f} s left, the row expects '
          f'{ROWS[name]["seconds"]} s'))
    else:  # a row that overruns the budget by more than 30 s is cut off
      timeout = args.row_timeout_s if args.tiny else min(args.row_timeout_s,
                                                         left + 30)
      results['rows'][name] = run_child(name, args, results['rows'], timeout)
    print(f'{name}: {json.dumps(results["rows"][name])}', flush=True)
    write(out, results)
  return results


def run_child(name: str, args, done: dict, timeout: float) -> dict:
  """One row in its own process -> its result dict (status 'ok',
  'failed' or 'skipped')."""
  # Not under --out: only the table and the JSON belong there.
  path = pathlib.Path(tempfile.gettempdir()) / (
      f'gpu_suite_row_{name}_{os.getpid()}.json')
  path.unlink(missing_ok=True)
  context = {'matmul_flops': done.get('matmul', {}).get('flops_per_s'),
             'batches': {k: v.get('batch') for k, v in done.items()}}
  command = [sys.executable, str(pathlib.Path(__file__).resolve()),
             f'--child={name}', f'--child_json={path}',
             f'--steps={args.steps}', f'--warmup={args.warmup}',
             f'--memory_fraction={args.memory_fraction}',
             f'--out={args.out}', f'--batches={args.batches}'] + (
                 ['--tiny'] if args.tiny else [])
  env = dict(os.environ, GPU_SUITE_CONTEXT=json.dumps(context))
  # Every row measures one device: drop simulated CPU devices (the test
  # suite's conftest sets 8, which a batch of 2 cannot be split over).
  env['XLA_FLAGS'] = re.sub(r'--xla_force_host_platform_device_count=\d+',
                            '', env.get('XLA_FLAGS', ''))
  if ROWS[name]['kind'] in ('jax', 'matmul'):
    env.setdefault('XLA_PYTHON_CLIENT_MEM_FRACTION', '0.95')
  else:  # PyTorch rows import jax (configs, FLOPs): keep it off the GPU
    env['JAX_PLATFORMS'] = 'cpu'
  started = time.monotonic()
  try:
    proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
  except subprocess.TimeoutExpired:
    return dict(status='failed', note=f'timed out after {timeout:.0f} s')
  wall = time.monotonic() - started
  if path.exists():
    result = json.loads(path.read_text(encoding='utf-8'))
    path.unlink()
  else:
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-12:]
    result = dict(status='failed', note=f'exit {proc.returncode}',
                  log_tail=tail)
  result['row_wall_s'] = round(wall, 1)
  return result


def environment() -> dict:
  """Versions of what the figures depend on (without importing jax or
  torch here: the parent must not take the device)."""
  env = {'python': sys.version.split()[0]}
  try:
    env['gpu'] = subprocess.run(
        ['nvidia-smi', '--query-gpu=name,driver_version,memory.total',
         '--format=csv,noheader'], capture_output=True, text=True,
        timeout=30).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    env['gpu'] = 'none (nvidia-smi not found)'
  versions = subprocess.run(
      [sys.executable, '-c', 'import importlib.metadata as m\n'
       'for p in ("jax","jaxlib","flax","optax","torch","transformers"):\n'
       '  try: print(p, m.version(p))\n'
       '  except m.PackageNotFoundError: print(p, "-")'],
      capture_output=True, text=True).stdout.split('\n')
  env.update(line.split(' ', 1) for line in versions if ' ' in line)
  env['git_commit'] = subprocess.run(
      ['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, capture_output=True,
      text=True).stdout.strip() or 'unknown'
  env['date'] = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
  return env


def write(out: pathlib.Path, results: dict) -> None:
  (out / 'gpu_suite.json').write_text(json.dumps(results, indent=1) + '\n',
                                      encoding='utf-8')
  (out / 'gpu_suite.md').write_text(table(results), encoding='utf-8')


def table(results: dict) -> str:
  env = results['environment']
  lines = ['GPU: ' + env.get('gpu', '?') + '; ' + ', '.join(
      f'{k} {env[k]}' for k in ('jax', 'jaxlib', 'flax', 'torch',
                                 'transformers', 'python', 'git_commit',
                                 'date') if k in env), '', HEADER, RULE]
  for name, r in results['rows'].items():
    lines.append(table_row(name, r))
  return '\n'.join(lines) + '\n'


def table_row(name: str, r: dict) -> str:
  def fmt(key, spec, scale=1.0):
    value = r.get(key)
    return '' if value is None else format(value * scale, spec)
  shape = (f'{r["batch"]} x {r["seq"]}' if r.get('batch') else '')
  note = r.get('note', '')
  if r.get('status') != 'ok':
    note = f'{r.get("status")}: {note}'.strip()
  return (f'| {name} | {shape} | {fmt("step_s", ",.1f", 1e3)} | '
          f'{fmt("tokens_per_s", ",.0f")} | {fmt("mfu_datasheet", ".1%")} | '
          f'{fmt("mfu_measured", ".1%")} | {fmt("peak_bytes", ".1f", 2**-30)}'
          f' | {note} |')


# ------------------------------------------------------------- the child --
def child(args) -> None:
  spec = ROWS[args.child]
  context = json.loads(os.environ.get('GPU_SUITE_CONTEXT', '{}'))
  runner = {'matmul': matmul_row, 'jax': jax_row, 'torch': torch_row,
            'tests': tests_row}[spec['kind']]
  result = runner(spec, args, context)
  result.setdefault('status', 'ok')
  pathlib.Path(args.child_json).write_text(json.dumps(result),
                                           encoding='utf-8')


def matmul_row(spec, args, context) -> dict:
  """FLOP/s of a bf16 [n, n] x [n, n] jnp.dot: the median of 20 calls."""
  del spec, context
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  n = 256 if args.tiny else 8192
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
  dot = jax.jit(jnp.dot)
  dot(a, a).block_until_ready()
  times = []
  for _ in range(20):
    start = time.perf_counter()
    dot(a, a).block_until_ready()
    times.append(time.perf_counter() - start)
  flops_per_s = 2 * n ** 3 / statistics.median(times)
  return dict(flops_per_s=flops_per_s, note=(
      f'{n}^3 bf16 jnp.dot: {flops_per_s / 1e12:.3g} TFLOP/s on '
      f'{jax.devices()[0].device_kind}'))


def row_config(name: str, args):
  """The row's training config, with the suite's settings and --tiny's
  shapes applied."""
  import importlib  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  spec = ROWS[name]
  module, arg = spec['config']
  config = importlib.import_module(f'configs.{module}').get_config(arg)
  overrides = {'model.dtype': 'bfloat16', 'model.param_dtype': 'float32',
               'model.dropout_rate': 0.0, 'model.attention_dropout_rate': 0.0,
               'model.activation_dropout_rate': 0.0,
               'parallelism': 'mesh', **spec['overrides']}
  seq, batch = spec['seq'], spec.get('batch', 0)
  batch = args.batch_of.get(name, batch)
  if args.tiny:
    overrides.update(TINY_MODEL)
    if config.model.get('num_kv_heads'):
      overrides['model.num_kv_heads'] = 1
    if config.model.get('type_vocab_size'):
      overrides['model.type_vocab_size'] = 2
    seq, batch = TINY_SEQ * (2 if seq > 1024 else 1), TINY_BATCH
    overrides['model.max_len'] = seq
    overrides['model.attention_block_size'] = 16
    if 'data.max_predictions' in overrides:
      overrides['data.max_predictions'] = 5
  if (overrides.get('model.attention_impl', config.model.attention_impl)
      == 'cudnn' and jax.default_backend() != 'gpu'):
    overrides['model.attention_impl'] = 'einsum'  # --tiny on a CPU
  for path, value in overrides.items():
    section, field = path.split('.') if '.' in path else (None, path)
    (config[section] if section else config)[field] = value
  if seq > config.model.max_len:
    raise ValueError(f'row {name}: sequence {seq} is longer than '
                     f'model.max_len={config.model.max_len}')
  config.data.max_length = seq
  config.batch_size = batch or 8
  config.eval_batch_size = config.batch_size
  return config, seq, batch


def jax_row(spec, args, context) -> dict:
  """Compiles training.steps.train_step for the row's config (benchmark.py's
  compile_step), picks the batch, and times it."""
  import jax  # pylint: disable=g-import-not-at-top
  from experiments import benchmark  # pylint: disable=g-import-not-at-top
  config, seq, batch = row_config(args.child, args)
  if spec.get('needs_gpu') and jax.default_backend() != 'gpu':
    return dict(status='skipped', note='cuDNN attention needs a GPU')
  notes = []
  limit = args.memory_fraction * (
      (jax.devices()[0].memory_stats() or {}).get('bytes_limit', 0))
  if not (args.search_batch and spec.get('searchable') and limit):
    compiled_step = benchmark.compile_step(config)  # a CPU has no limit
  else:
    compiled_step, search = fit_batch(config, limit)
    notes.append(search)
  task, _, compiled, (state, data, rng), compile_s = compiled_step
  for _ in range(args.warmup):
    state, metrics = compiled(state, data, rng)
  jax.block_until_ready(state)
  times = []
  for _ in range(args.steps):
    start = time.perf_counter()
    state, metrics = compiled(state, data, rng)
    jax.block_until_ready(state)
    times.append(time.perf_counter() - start)
  loss = float(metrics['loss']) / max(float(metrics['weight']), 1.0)
  step_s = statistics.median(times)
  model_flops = task.train_flops(task.model_config, config,
                                 config.batch_size)
  result = dict(batch=config.batch_size, seq=seq, step_s=step_s,
                step_times_s=times, compile_s=compile_s,
                tokens_per_s=config.batch_size * seq / step_s,
                model_flops=model_flops, loss=loss,
                attention_impl=config.model.attention_impl,
                remat_policy=config.model.remat_policy,
                peak_bytes=peak_bytes(compiled))
  result.update(mfus(model_flops / step_s, jax.devices()[0].device_kind
                     if jax.default_backend() == 'gpu' else '', context))
  if not notes:
    notes.append(f'batch {config.batch_size} fixed')
  notes.append(f'{config.model.attention_impl} attention, remat '
               f'{config.model.remat_policy}, compile {compile_s:.0f} s, '
               f'loss {loss:.3f}')
  result['note'] = '; '.join(notes)
  return result


def fit_batch(config, limit_bytes: float, probe: int = 8):
  """The largest batch (a multiple of 8, at most 512) that the compiled
  step's footprint puts under `limit_bytes`, by a linear estimate ->
  (benchmark.compile_step's tuple at that batch, a note).

  The step compiled at `probe` rows gives the fixed bytes (arguments and
  outputs less the donated state) and the bytes per row (its temporaries
  over `probe`: an upper bound, since part of them does not grow with the
  batch, so the estimate errs on the side of fitting). The guess is
  compiled and, while its footprint is over the limit, cut by a tenth and
  compiled again."""
  from experiments import benchmark  # pylint: disable=g-import-not-at-top
  config.batch_size = probe
  fixed, temp = footprint(benchmark.compile_step(config)[2])
  per_row = temp / probe
  batch = min(512, max(probe, int((limit_bytes - fixed) / per_row) // 8 * 8))
  tries = []
  while True:
    config.batch_size = batch
    compiled_step = benchmark.compile_step(config)
    total = sum(footprint(compiled_step[2]))
    tries.append(f'{batch}: {total / 2**30:.1f} GiB')
    if total <= limit_bytes or batch <= probe:
      break
    del compiled_step
    batch = max(probe, int(batch * 0.9) // 8 * 8)
  return compiled_step, (f'largest batch under {limit_bytes / 2**30:.1f} '
                         f'GiB, compiled footprint {"; ".join(tries)}')


def footprint(compiled) -> tuple[float, float]:
  """(fixed bytes: arguments + outputs - donated aliases, temporaries) of
  a compiled step."""
  m = compiled.memory_analysis()
  return (m.argument_size_in_bytes + m.output_size_in_bytes -
          m.alias_size_in_bytes, m.temp_size_in_bytes)


def peak_bytes(compiled=None) -> float | None:
  import jax  # pylint: disable=g-import-not-at-top
  stats = jax.devices()[0].memory_stats()
  if stats and 'peak_bytes_in_use' in stats:
    return float(stats['peak_bytes_in_use'])
  return None if compiled is None else sum(footprint(compiled))  # CPU


def mfus(model_flops_per_s: float, gpu_name: str, context: dict) -> dict:
  """MFU against the data sheet of GPU `gpu_name` ('' on a CPU) and the
  matmul row, where known."""
  from training import flops  # pylint: disable=g-import-not-at-top
  out = {}
  sheet = flops.gpu_peak_flops(gpu_name) if gpu_name else None
  if sheet:
    out['mfu_datasheet'] = model_flops_per_s / sheet
  if context.get('matmul_flops'):
    out['mfu_measured'] = model_flops_per_s / context['matmul_flops']
  return out


def torch_row(spec, args, context) -> dict:
  """Hugging Face transformers' model of the row `spec['like']` at its
  batch (halved while it does not fit), bf16 autocast, sdpa attention,
  fused AdamW, optionally torch.compile."""
  import torch  # pylint: disable=g-import-not-at-top
  from tasks import task_class  # pylint: disable=g-import-not-at-top
  config, seq, batch = row_config(spec['like'], args)
  batches = context.get('batches', {})
  # torch.compile after an out-of-memory would compile again: start at the
  # batch the eager row found to fit.
  batch = (args.batch_of.get(args.child) or
           batches.get(spec.get('batch_from', '')) or
           batches.get(spec['like']) or batch or 8)
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  notes = []
  while True:
    try:
      step_s, times, loss = time_torch(config, batch, device,
                                       spec['compile'], args)
      break
    except torch.OutOfMemoryError:
      if batch <= 1:
        raise
      notes.append(f'batch {batch} out of memory')
      batch //= 2
      torch.cuda.empty_cache()
      torch.cuda.reset_peak_memory_stats()
  config.batch_size = batch
  model_cfg = _task_model_config(config)
  model_flops = task_class(config).train_flops(model_cfg, config, batch)
  result = dict(batch=batch, seq=seq, step_s=step_s, step_times_s=times,
                tokens_per_s=batch * seq / step_s, model_flops=model_flops,
                loss=loss, peak_bytes=(float(torch.cuda.max_memory_allocated())
                                       if device == 'cuda' else None))
  result.update(mfus(model_flops / step_s, torch.cuda.get_device_name()
                     if device == 'cuda' else '', context))
  notes.append(f'torch {torch.__version__}, '
               + ('torch.compile' if spec['compile'] else 'eager')
               + f', sdpa, fused AdamW, loss {loss:.3f}')
  result['note'] = '; '.join(notes)
  return result


def _task_model_config(config):
  from tasks import get_task  # pylint: disable=g-import-not-at-top
  return get_task(config).model_config


def time_torch(config, batch: int, device: str, compiled: bool, args):
  """(median step seconds, every step's seconds, last loss) of PyTorch
  training steps on synthetic batches of our row's layout."""
  import torch  # pylint: disable=g-import-not-at-top
  from experiments import benchmark  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  torch.backends.cuda.matmul.allow_tf32 = True
  model = benchmark.torch_model(config)
  if hasattr(model, 'set_attn_implementation'):
    model.set_attn_implementation('sdpa')
  else:  # older transformers read the config at every forward
    model.config._attn_implementation = 'sdpa'  # pylint: disable=protected-access
  model = model.to(device).train()
  opt = config.optimizer
  optimizer = torch.optim.AdamW(
      model.parameters(), lr=1e-4, betas=(opt.b1, opt.b2), eps=opt.eps,
      weight_decay=opt.weight_decay, fused=device == 'cuda')
  data = {k: torch.from_numpy(v).to(device) for k, v in
          benchmark.synthetic_batch(config, batch).items()}
  if config.task == 'bert_pretraining':
    labels = torch.where(data['mlm_weights'] > 0, data['mlm_targets'],
                         -100).long()
    inputs = dict(input_ids=data['input_ids'].long(),
                  token_type_ids=data['token_type_ids'].long(),
                  attention_mask=data['attention_mask'].long(),
                  labels=labels, next_sentence_label=data['nsp_labels'].long())
  else:
    ids = data['inputs'].long()
    inputs = dict(input_ids=ids, labels=ids)
  forward = torch.compile(model) if compiled else model

  def step():
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device, torch.bfloat16):
      loss = forward(**inputs).loss
    loss.backward()
    optimizer.step()
    return loss

  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
  for _ in range(args.warmup):
    loss = step()
  sync()
  times = []
  for _ in range(args.steps):
    start = time.perf_counter()
    loss = step()
    sync()
    times.append(time.perf_counter() - start)
  return statistics.median(times), times, float(loss.detach())


def tests_row(spec, args, context) -> dict:
  """The suite's GPU-only tests (tests/gpu_tests.sh): pass/fail counts."""
  del spec, context
  script = REPO / 'tests' / 'gpu_tests.sh'
  env = dict(os.environ, PYTHON=sys.executable)
  if args.tiny:  # on a CPU they skip: check that the command runs
    env['GPU_TESTS_PLATFORM'] = 'cpu'
  proc = subprocess.run(['bash', str(script)], cwd=REPO, env=env,
                        capture_output=True, text=True)
  summary = [line for line in proc.stdout.splitlines()
             if ' passed' in line or ' failed' in line or ' skipped' in line
             or ' error' in line]
  last = summary[-1].strip('= ') if summary else 'no pytest summary'
  status = 'ok' if proc.returncode == 0 else 'failed'
  return dict(status=status, note=last, returncode=proc.returncode,
              log_tail=(proc.stdout + proc.stderr).splitlines()[-15:])


def main(argv=None) -> int:
  args = parse_args(argv)
  sys.path.insert(0, str(REPO))
  if args.child:
    child(args)
    return 0
  results = run_suite(args)
  print(table(results))
  failed = [n for n, r in results['rows'].items() if r['status'] == 'failed']
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
