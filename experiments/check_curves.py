r"""Re-runs the first steps of each reproduction and compares its loss curve
with the recorded one (experiments/curves/<name>.json).

  python experiments/check_curves.py              # every curve, ~1 min each
  python experiments/check_curves.py --only=shakespeare_cpu
  python experiments/check_curves.py --cheapest   # what CI runs
  python experiments/check_curves.py --only=default \
      --override=optimizer.learning_rate=0.0027   # a wrong change: fails

Run it before committing a change that touches models, losses, optimizers
or dropout: tests compare such changes with autodiff, but only this says
that a reproduction still learns as it did. Each curve is the per-step
training loss of the reproduction's own command (its config, seed 0, one
CPU device), from step 1 to `steps`, compared as means over windows of
`window` steps; a window further from the record than the curve's
`tolerance` fails, printing the config, the step and both values. How the
tolerance was derived (seed-to-seed spread, rounding on another CPU) is in
each file's `tolerance_rule` and in experiments/curves/README.md.

Maintenance (writes the curve files; the figures behind the tolerance):
  --record          re-record the losses at this commit (seed 0)
  --measure_spread  run seeds 1 and 2 and the rounding probe and store
                    their window differences from the recorded curve
                    (then the tolerance: derive_tolerance)
  --measure_spread=other_machine
                    on another kind of CPU than the recording one: seed 0
                    and the probe here, stored under this machine's name
Exit code: 0 all within tolerance, 1 a curve is not, 2 bad arguments or a
curve that cannot run here (e.g. no $DATA_DIR).
"""
import argparse
import ast
import contextlib
import dataclasses
import datetime
import importlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run as a script: the repository's packages
from errors import UserError  # pylint: disable=wrong-import-position

CURVES_DIR = os.path.join(REPO, 'experiments', 'curves')


@dataclasses.dataclass(frozen=True)
class Curve:
  """The reproduction whose first `steps` steps are recorded."""
  config: str        # 'configs/x.py' or 'configs/x.py:arg'
  overrides: dict    # the published command's --config.* flags
  steps: int         # steps re-run (about a minute on 2 cores)
  window: int        # steps averaged per compared value
  record: str        # the experiments/*.md that reports the run
  # A default changed after the published run: these settings reproduce it.
  reproduces_with: dict = dataclasses.field(default_factory=dict)
  needs_data: bool = True
  # The published run's metrics file, whose first logged window the prefix
  # is compared with (None: it logged no window inside the prefix).
  published_metrics: str | None = None


# The rounding probe: the same model and data with another matmul kernel
# for the backward dots (models/fast_dots.py or XLA's), so the same
# arithmetic rounded differently, as another CPU or XLA version rounds it.
ROUNDING_PROBE = {'model.cpu_fast_dots': False}

CURVES = {
    'default': Curve(
        'configs/default.py', {}, steps=150, window=30,
        record='experiments/default.md', needs_data=False),
    'shakespeare_cpu': Curve(
        'configs/shakespeare_char.py:cpu', {}, steps=200, window=20,
        record='experiments/shakespeare.md',
        published_metrics='experiments/shakespeare_cpu_metrics_run2.jsonl'),
    'multi30k_en_de': Curve(
        'configs/multi30k_en_de.py:steps=7000', {'grad_accum_steps': 4},
        steps=50, window=10, record='experiments/multi30k.md',
        reproduces_with={'model.dropout_prng': 'jax_default'},
        published_metrics='experiments/multi30k_cpu_metrics_7000.jsonl'),
    'multi30k_de_en': Curve(
        'configs/multi30k_de_en.py:steps=5500', {}, steps=50, window=10,
        record='experiments/multi30k.md',
        reproduces_with={'model.dropout_prng': 'jax_default'},
        published_metrics='experiments/multi30k_de_en_cpu_metrics.jsonl'),
    'bert_mini_wikitext2': Curve(
        'configs/bert_pretraining.py:size=mini,data=wikitext2', {},
        steps=20, window=4, record='experiments/bert_pretraining.md',
        reproduces_with={'model.dropout_prng': 'jax_default'}),
    'sst2_mini_random': Curve(
        'configs/bert_finetune.py:size=mini,data=sst2', {}, steps=50,
        window=10, record='experiments/bert_pretraining.md',
        reproduces_with={'model.dropout_prng': 'jax_default'},
        published_metrics='experiments/sst2_mini_random_metrics.jsonl'),
    'sst2_minilm': Curve(
        'configs/bert_finetune.py:data=sst2,init=minilm', {}, steps=50,
        window=10, record='experiments/sst2.md',
        reproduces_with={'model.dropout_prng': 'jax_default'},
        published_metrics='experiments/sst2_minilm_run2_metrics.jsonl'),
    'squad_minilm': Curve(
        'configs/bert_finetune.py:task=qa,data=squad,init=minilm',
        {'model.dtype': 'bfloat16', 'data.max_length': 256,
         'num_train_steps': 300, 'optimizer.warmup_steps': 30}, steps=8,
        window=2, record='experiments/squad.md',
        reproduces_with={'model.dropout_prng': 'jax_default'}),
}
CHEAPEST = 'default'


# ------------------------------------------------------------- running --
def load_config(curve: Curve, extra: dict):
  """The curve's config with its command's overrides, `extra`, and the
  settings of a short deterministic prefix (log every step, no eval, one
  checkpoint only at the end, one device)."""
  path, _, arg = curve.config.partition(':')
  module = importlib.import_module(
      os.path.splitext(path)[0].replace(os.sep, '.'))
  config = module.get_config(arg) if arg else module.get_config()
  total = dict(curve.overrides, **extra).get('num_train_steps',
                                             config.num_train_steps)
  settings = {**curve.overrides, **curve.reproduces_with, **extra,
              'log_every': 1, 'eval_every': total, 'checkpoint_every': total,
              'num_devices': 1, 'average_last_checkpoints': 0}
  for dotted, value in settings.items():
    *parents, leaf = dotted.split('.')
    node = config
    for part in parents:
      node = node[part]
    if leaf not in node:
      raise UserError(f'--override {dotted}: no such config field')
    try:
      node[leaf] = value
    except TypeError as e:  # ml_collections refuses a value of another type
      raise UserError(f'--override {dotted}={value!r}: {e}') from e
  return config


def run_prefix(curve: Curve, extra: dict | None = None) -> list[float]:
  """Training losses of steps 1..curve.steps, one per step."""
  # jax after argv. pylint: disable=g-import-not-at-top
  from training import loop
  config = load_config(curve, extra or {})
  with tempfile.TemporaryDirectory(prefix='curve_') as workdir, \
      contextlib.redirect_stdout(io.StringIO()):  # a line per step
    loop.train_and_evaluate(config, workdir, stop_at_step=curve.steps)
    losses = {}
    with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
      for line in f:
        row = json.loads(line)
        if 'train/loss' in row:
          losses[row['step']] = row['train/loss']
  return [losses[s] for s in range(1, curve.steps + 1)]


def window_means(losses: list[float], window: int) -> list[float]:
  return [sum(losses[i:i + window]) / len(losses[i:i + window])
          for i in range(0, len(losses), window)]


# ---------------------------------------------------------- comparing --
def compare(name: str, curve: Curve, recorded: dict, losses: list[float]
            ) -> list[str]:
  """One line per window outside the tolerance."""
  tolerance = recorded['tolerance']
  new = window_means(losses, curve.window)
  old = window_means(recorded['losses'], curve.window)
  failures = []
  for i, (a, b) in enumerate(zip(new, old)):
    limit = tolerance[i] if isinstance(tolerance, list) else tolerance
    if limit is not None and abs(a - b) > limit:
      first, last = i * curve.window + 1, min((i + 1) * curve.window,
                                              curve.steps)
      failures.append(
          f'{name} ({curve.config}): mean loss of steps {first}-{last} is '
          f'{a:.4f}, recorded {b:.4f} (|difference| {abs(a - b):.4f} > '
          f'tolerance {limit:.4f})')
  return failures


def curve_path(name: str) -> str:
  return os.path.join(CURVES_DIR, f'{name}.json')


def read_curve(name: str) -> dict:
  with open(curve_path(name), encoding='utf-8') as f:
    return json.load(f)


def write_curve(name: str, record: dict):
  os.makedirs(CURVES_DIR, exist_ok=True)
  with open(curve_path(name), 'w', encoding='utf-8') as f:
    json.dump(record, f, indent=1)
    f.write('\n')


def command_line(curve: Curve) -> str:
  flags = ' '.join(f'--config.{k}={v}' for k, v in
                   {**curve.overrides, **curve.reproduces_with}.items())
  return (f'python train.py --config={curve.config} {flags}'.strip() +
          f' --workdir=W  # first {curve.steps} steps, log_every=1')


def machine() -> str:
  """The CPU as lscpu names it, with the vector extensions that change
  XLA's kernels (and so the rounding): AVX-512 and AMX, or neither."""
  fields = {}
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        key, _, value = line.partition(':')
        fields.setdefault(key.strip(), value.strip())
  except OSError:
    pass
  model = fields.get('model name', platform.processor() or platform.machine())
  flags = fields.get('flags', '').split()
  vector = [f for f in ('avx512f', 'avx512_bf16', 'amx_tile') if f in flags]
  return (f'{model} (family {fields.get("cpu family", "?")}, model '
          f'{fields.get("model", "?")}; {" ".join(vector) or "no AVX-512"})'
          f', {len(os.sched_getaffinity(0))} cores')


def commit() -> str:
  try:
    return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO,
                          capture_output=True, text=True,
                          check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'


def published_window(curve: Curve) -> dict | None:
  """The published run's first logged training loss inside the prefix."""
  if not curve.published_metrics:
    return None
  with open(os.path.join(REPO, curve.published_metrics),
            encoding='utf-8') as f:
    for line in f:
      row = json.loads(line)
      if 'train/loss' in row and row['step'] <= curve.steps:
        return dict(file=curve.published_metrics, step=row['step'],
                    mean_loss=row['train/loss'])
  return None


SPREAD_RUNS = {'seed_1': {'seed': 1}, 'seed_2': {'seed': 2},
               'rounding_probe': ROUNDING_PROBE,
               # Seed 0 and the probe on this machine, when it is another
               # kind of CPU than the recording one: the rounding that CI's
               # machines (of every kind) bring.
               'other_machine': None}


def record_curve(name: str, curve: Curve):
  """Runs seed 0 and writes the curve file, keeping the spread measured
  before (re-measure it after a change that moves the curve)."""
  try:
    record = read_curve(name)
  except FileNotFoundError:
    record = {}
  begin = time.time()
  losses = run_prefix(curve)
  seconds = time.time() - begin
  record.update(
      name=name, config=curve.config, command=command_line(curve),
      record=curve.record, reproduces_with=curve.reproduces_with,
      steps=curve.steps, window=curve.window, losses=losses,
      recorded=dict(commit=commit(), date=datetime.date.today().isoformat(),
                    machine=machine(), seconds=round(seconds, 1)))
  published = published_window(curve)
  if published:
    published['rerun_mean_loss'] = sum(losses[:published['step']]) / (
        published['step'])
    record['published_run'] = published
  record['tolerance'] = derive_tolerance(record)
  write_curve(name, record)
  print(f'{name}: recorded {curve.steps} steps in {seconds:.0f} s; window '
        f'means {[round(m, 4) for m in window_means(losses, curve.window)]}',
        flush=True)


def measure_spread(name: str, curve: Curve, runs: list[str]):
  """Runs `runs` (SPREAD_RUNS names) and stores each one's |difference|
  from the recorded curve, window by window; then the tolerance."""
  record = read_curve(name)
  spread = record.setdefault('spread', {})
  difference = lambda extra: [
      round(abs(a - b), 5) for a, b in zip(
          window_means(run_prefix(curve, extra), curve.window),
          window_means(record['losses'], curve.window))]
  for label in runs:
    if label == 'other_machine':
      spread.setdefault('other_machines', {})[machine()] = {
          'seed_0': difference({}), 'rounding_probe': difference(
              ROUNDING_PROBE), 'date': datetime.date.today().isoformat()}
      print(f'{name} on {machine()}: '
            f'{spread["other_machines"][machine()]}', flush=True)
    else:
      spread[label] = difference(SPREAD_RUNS[label])
      print(f'{name} {label}: |window difference| {spread[label]}',
            flush=True)
  record['tolerance'] = derive_tolerance(record)
  write_curve(name, record)


TOLERANCE_RULE = (
    'per window of `window` steps: max(3 x the rounding, a tenth of the '
    'mean |difference| of seeds 1 and 2 from seed 0, 0.001), where the '
    'rounding is the largest |difference| of the rounding probe and of seed '
    '0 and the probe on other kinds of CPU (`other_machines`);'
    ' a '
    'window where 3 x the rounding exceeds half the seed '
    'difference is not compared (null): there rounding alone moves the '
    'curve as much as another seed. '
    'Provisional where the spread is not measured yet: 0.5% of the window\'s '
    'recorded mean loss.')


def derive_tolerance(record: dict) -> list:
  """TOLERANCE_RULE, window by window (None: the window is not compared)."""
  spread = record.get('spread', {})
  seeds = [spread[k] for k in ('seed_1', 'seed_2') if k in spread]
  probe = spread.get('rounding_probe')
  if not seeds or probe is None:
    record['tolerance_rule'] = TOLERANCE_RULE + ' Here: provisional.'
    return [round(0.005 * m, 5) for m in
            window_means(record['losses'], record['window'])]
  record['tolerance_rule'] = TOLERANCE_RULE + ' Here: measured.'
  roundings = [probe] + [run[k] for run in spread.get(
      'other_machines', {}).values() for k in ('seed_0', 'rounding_probe')]
  tolerance = []
  for i in range(len(probe)):
    rounding = max(r[i] for r in roundings)
    seed = sum(s[i] for s in seeds) / len(seeds)
    limit = max(3 * rounding, seed / 10, 0.001)
    tolerance.append(round(limit, 5) if 3 * rounding <= seed / 2 else None)
  return tolerance


def parse_override(text: str) -> tuple[str, object]:
  key, eq, value = text.partition('=')
  if not eq:
    raise argparse.ArgumentTypeError(f'{text!r} is not FIELD=VALUE')
  try:  # True, 3e-3, 'text', [1, 2]: Python literals, as in a config
    return key, ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return key, value


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--only', action='append', choices=sorted(CURVES),
                      help='this curve only (repeatable)')
  parser.add_argument('--cheapest', action='store_true',
                      help=f'the cheapest curve only ({CHEAPEST})')
  parser.add_argument('--override', action='append', type=parse_override,
                      default=[], metavar='FIELD=VALUE',
                      help='a config change to check (e.g. a wrong one)')
  parser.add_argument('--steps', type=int, default=0,
                      help='check only the first N steps (whole windows)')
  parser.add_argument('--record', action='store_true')
  parser.add_argument('--measure_spread', metavar='RUNS', nargs='?',
                      const=','.join(SPREAD_RUNS),
                      help=f'of {",".join(SPREAD_RUNS)} (default all)')
  args = parser.parse_args(argv)
  names = args.only or ([CHEAPEST] if args.cheapest else list(CURVES))
  if not os.environ.get('DATA_DIR') and any(CURVES[n].needs_data
                                            for n in names):
    print('error: DATA_DIR is not set (the data sets: DATA_DIR=../shared/data'
          '); --cheapest needs none', file=sys.stderr)
    return 2
  sys.path.insert(0, REPO)
  if args.record or args.measure_spread:
    for name in names:
      if args.record:
        record_curve(name, CURVES[name])
      if args.measure_spread:
        measure_spread(name, CURVES[name], args.measure_spread.split(','))
    return 0
  extra = dict(args.override)
  failed = missing = 0
  for name in names:
    curve = CURVES[name]
    if args.steps:
      curve = dataclasses.replace(curve, steps=min(curve.steps, max(
          curve.window, args.steps // curve.window * curve.window)))
    try:
      recorded = read_curve(name)
    except FileNotFoundError:
      print(f'missing {name}: {curve_path(name)} is not recorded yet '
            f'(--only={name} --record makes it)', flush=True)
      missing += 1
      continue
    begin = time.time()
    try:
      losses = run_prefix(curve, extra)
    except UserError as e:  # a bad --override, or a config train.py refuses
      print(f'error: {name} ({curve.config}): {e}', file=sys.stderr)
      return 2
    failures = compare(name, curve, recorded, losses)
    status = 'FAIL' if failures else 'ok'
    print(f'{status} {name}: {curve.steps} steps in {time.time() - begin:.0f}'
          f' s, recorded at {recorded["recorded"]["commit"]}', flush=True)
    for line in failures:
      print(f'  {line}', flush=True)
    failed += bool(failures)
  return 1 if failed else 2 if missing else 0


if __name__ == '__main__':
  sys.exit(main())
