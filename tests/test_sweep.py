"""sweep.py end to end: real train.py trials, real Optuna storages.

Trials are tiny (a 1-2 layer d_model 32 reversal model, tens of steps), so
the time goes to process start-up; each sweep runs in a subprocess, as a
user would run it, with one simulated CPU device per trial.
"""
import csv
import functools
import glob
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import optuna
import pytest

from sweeping import spec as spec_lib
from sweeping import study as study_lib
from sweeping.workers import split_devices

REPO = pathlib.Path(__file__).resolve().parents[1]

# A tiny variant of configs/default.py; each test appends its get_sweep().
TINY = '''
from configs.default import get_config as _default


def get_config():
  config = _default()
  config.model.update(d_model=32, num_heads=2, d_ff=64, num_layers=1)
  config.data.num_eval_examples = 64
  config.decode.beam_size = 0
  config.num_train_steps = {steps}
  config.optimizer.warmup_steps = 5
  config.log_every = config.eval_every = config.checkpoint_every = 10
  return config


def get_sweep():
  return {sweep}
'''


def tiny_config(tmp_path, sweep: str, steps: int = 20, name='tiny.py'):
  path = tmp_path / name
  path.write_text(TINY.format(sweep=sweep, steps=steps))
  return str(path)


_COMPILE_CACHE = []  # one JAX compilation cache for every test's trials


@pytest.fixture(scope='module', autouse=True)
def shared_compile_cache(tmp_path_factory):
  _COMPILE_CACHE.append(str(tmp_path_factory.mktemp('compile_cache')))
  yield
  _COMPILE_CACHE.pop()


def sweep_env() -> dict:
  env = dict(os.environ)
  env.pop('XLA_FLAGS', None)  # conftest's 8 simulated devices: 1 per trial
  env['JAX_PLATFORMS'] = 'cpu'
  # The tests' trials share most programs (the sweep shares a cache only
  # within DIR); tiny programs compile under JAX's 1 s caching threshold.
  env['JAX_COMPILATION_CACHE_DIR'] = _COMPILE_CACHE[-1]
  env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  return env


def sweep_command(config, workdir, *flags):
  return [sys.executable, str(REPO / 'sweep.py'), f'--config={config}',
          f'--workdir={workdir}', *flags]


def run_sweep(config, workdir, *flags, timeout=240):
  result = subprocess.run(sweep_command(config, workdir, *flags), cwd=REPO,
                          env=sweep_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
  assert result.returncode == 0, result.stdout + result.stderr
  return result


def read_report(workdir) -> list:
  with open(os.path.join(workdir, 'report.csv'), encoding='utf-8') as f:
    return list(csv.DictReader(f))


def train_runs(workdir, trial) -> int:
  """How many train.py processes started in a trial's workdir."""
  log = pathlib.Path(workdir, 'trials', str(trial), 'train.log').read_text()
  return log.count('step 10/')


# ------------------------------------------------------------------ grid --
GRID = ("dict(grid={'optimizer.learning_rate': [0.0, 3e-3], "
        "'model.num_layers': [1, 2]}, objective='eval/loss', direction='min')")


@pytest.fixture(scope='module')
def grid_sweep(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('grid')
  config, workdir = tiny_config(tmp, GRID), str(tmp / 'sweep')
  result = run_sweep(config, workdir, '--workers=2')
  return config, workdir, result


def test_grid_runs_every_setting_once_and_finds_the_learner(grid_sweep):
  _, workdir, result = grid_sweep
  rows = read_report(workdir)
  assert len(rows) == 4
  assert sorted((float(r['optimizer.learning_rate']),
                 int(r['model.num_layers'])) for r in rows) == [
                     (0.0, 1), (0.0, 2), (0.003, 1), (0.003, 2)]
  assert all(r['state'] == 'complete' and r['step'] == '20' for r in rows)
  # A learning rate of 0 cannot learn: both rows with 3e-3 come first.
  assert [float(r['optimizer.learning_rate']) for r in rows] == [
      0.003, 0.003, 0.0, 0.0]
  best = float(rows[0]['final eval/loss'])
  assert best < float(rows[-1]['final eval/loss']) - 0.3
  assert 'best eval/loss' in result.stdout.splitlines()[-1]
  for row in rows:
    params = json.loads(pathlib.Path(workdir, row['workdir'],
                                     'params.json').read_text())['params']
    assert params['model.num_layers'] == int(row['model.num_layers'])
  assert '| trial | state | optimizer.learning_rate |' in pathlib.Path(
      workdir, 'report.md').read_text()
  plots = sorted(os.listdir(os.path.join(workdir, 'plots')))
  assert plots == ['curves.png', 'objective_vs_model.num_layers.png',
                   'objective_vs_optimizer.learning_rate.png']
  hparams = glob.glob(os.path.join(workdir, 'tensorboard', 'trial_*', '*'))
  assert len(hparams) == 4


def test_rerun_of_a_finished_grid_runs_nothing(grid_sweep):
  config, workdir, _ = grid_sweep
  before = {n: train_runs(workdir, n) for n in range(4)}
  result = run_sweep(config, workdir, '--workers=2')
  assert 'started' not in result.stdout
  assert {n: train_runs(workdir, n) for n in range(4)} == before == {
      n: 1 for n in range(4)}


def test_report_flag_rewrites_the_report_without_running(grid_sweep):
  config, workdir, _ = grid_sweep
  os.remove(os.path.join(workdir, 'report.md'))
  result = run_sweep(config, workdir, '--report')
  assert '4/4 done' in result.stdout
  assert os.path.exists(os.path.join(workdir, 'report.md'))


# ------------------------------------------------------------ two workers --
def check_each_trial_ran_once(workdir, count):
  rows = read_report(workdir)
  assert len(rows) == count, rows
  assert all(r['state'] == 'complete' for r in rows)
  settings = {(r['optimizer.learning_rate'], r['model.num_layers'])
              for r in rows}
  assert len(settings) == count
  assert sorted(int(r['trial']) for r in rows) == list(range(count))
  assert all(train_runs(workdir, n) == 1 for n in range(count))
  assert not os.path.exists(os.path.join(workdir, 'trials', str(count)))


# Two trials for each of the two processes: enough for both to take trials
# from one study while the other runs (a third each only took time).
FOUR = ("dict(grid={'optimizer.learning_rate': [1e-3, 3e-3], "
        "'model.num_layers': [1, 2]}, objective='eval/loss', direction='min')")
TWO = ("dict(grid={'optimizer.learning_rate': [1e-3, 3e-3], "
       "'model.num_layers': [1]}, objective='eval/loss', direction='min')")


def run_two_processes(config, workdir, storage):
  commands = [sweep_command(config, workdir, '--workers=1',
                            f'--storage={storage}') for _ in range(2)]
  processes = [subprocess.Popen(c, cwd=REPO, env=sweep_env(), text=True,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT) for c in commands]
  outputs = [p.communicate(timeout=240)[0] for p in processes]
  for p, out in zip(processes, outputs):
    assert p.returncode == 0, out
  # Both processes ran trials.
  assert all('started' in out for out in outputs), outputs


def test_two_processes_share_one_sqlite_study(tmp_path):
  config = tiny_config(tmp_path, FOUR, steps=10)
  workdir = str(tmp_path / 'sweep')
  os.makedirs(workdir)
  run_two_processes(config, workdir, f'sqlite:///{workdir}/study.db')
  check_each_trial_ran_once(workdir, 4)


# ------------------------------------------------------------ kill, resume --
def test_killed_sweep_resumes_the_interrupted_trial(tmp_path):
  sweep = ("dict(grid={'optimizer.learning_rate': [1e-3, 3e-3]}, "
           "objective='eval/loss', direction='min')")
  config = tiny_config(tmp_path, sweep, steps=200)
  workdir = str(tmp_path / 'sweep')
  flags = ('--workers=1', '--heartbeat_s=1')
  process = subprocess.Popen(sweep_command(config, workdir, *flags),
                             cwd=REPO, env=sweep_env(), start_new_session=True,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  second = pathlib.Path(workdir, 'trials', '1')
  deadline = time.time() + 150
  while not (second / 'checkpoints' / '20').exists():
    assert time.time() < deadline and process.poll() is None
    time.sleep(0.2)
  os.killpg(process.pid, signal.SIGKILL)  # the sweep and its trial
  process.wait()
  first_metrics = pathlib.Path(workdir, 'trials', '0',
                               'metrics.jsonl').read_text()
  assert '"step": 200' in first_metrics
  assert '"step": 200' not in (second / 'metrics.jsonl').read_text()

  result = run_sweep(config, workdir, *flags)
  rows = {r['trial']: r for r in read_report(workdir)}
  assert set(rows) == {'0', '1'}
  assert rows['0']['runs'] == '1' and rows['1']['runs'] == '2'
  # The retry ran the interrupted trial's own grid point.
  assert sorted(float(r['optimizer.learning_rate'])
                for r in rows.values()) == [1e-3, 3e-3]
  assert all(r['state'] == 'complete' and r['step'] == '200'
             for r in rows.values()), (rows, result.stdout)
  assert 'trial 0 started' not in result.stdout  # finished: not re-run
  assert pathlib.Path(workdir, 'trials', '0',
                      'metrics.jsonl').read_text() == first_metrics
  log = (second / 'train.log').read_text()
  resumed = [line for line in log.splitlines() if 'resumed from step' in line]
  assert len(resumed) == 1 and int(resumed[0].split()[3]) >= 20, log


# ---------------------------------------------------- failures and pruning --
# Run in this order by one worker: a good trial, a trial that cannot learn
# (pruned by the median of the first), a config train.py rejects, and a
# learning rate that diverges (train.py's non-finite guard, exit code 3).
SETTINGS = ("dict(settings=[{'optimizer.learning_rate': 3e-3}, "
            "{'optimizer.learning_rate': 0.0}, {'model.num_heads': 3}, "
            "{'optimizer.learning_rate': 1e30}], "
            "objective='eval/loss', direction='min', pruner='median', "
            "pruner_args={'n_startup_trials': 1})")


@pytest.fixture(scope='module')
def failing_sweep(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('settings')
  config = tiny_config(tmp, SETTINGS, steps=150)
  workdir = str(tmp / 'sweep')
  run_sweep(config, workdir, '--workers=1')
  return {r['trial']: r for r in read_report(workdir)}


def test_failing_trial_is_recorded_and_the_sweep_goes_on(failing_sweep):
  failed = failing_sweep['2']
  assert failed['state'] == 'fail'
  assert failed['reason'] == ('error: model.d_model=32 is not divisible by '
                              'model.num_heads=3')
  assert failing_sweep['0']['state'] == 'complete'
  assert failing_sweep['0']['step'] == '150'


def test_diverged_trial_fails_with_the_nan_message(failing_sweep):
  diverged = failing_sweep['3']
  assert diverged['state'] == 'fail'
  assert diverged['reason'].startswith('error: non-finite '), diverged
  assert ' at step ' in diverged['reason']


def test_pruning_stops_a_trial_that_cannot_learn(failing_sweep):
  pruned = failing_sweep['1']
  assert pruned['state'] == 'pruned'
  assert 10 <= int(pruned['step']) < 150
  assert pruned['reason'].startswith('pruned at step')


# ------------------------------------------------------------- PostgreSQL --
@pytest.fixture
def postgres_url():
  """A throwaway PostgreSQL server on a unix socket; postgres refuses to
  run as root, so as root the cluster belongs to the 'postgres' user."""
  initdb = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb')) or [
      shutil.which('initdb')]
  if not initdb[-1]:
    message = 'no PostgreSQL server (apt-get install postgresql)'
    if os.environ.get('CI') == 'true':
      pytest.fail(message)
    pytest.skip(message)
  bin_dir = os.path.dirname(initdb[-1])
  root = tempfile.mkdtemp(prefix='sweep-pg-')
  as_user = []
  if os.geteuid() == 0:
    shutil.chown(root, 'postgres', 'postgres')
    as_user = ['runuser', '-u', 'postgres', '--']
  data, log = os.path.join(root, 'data'), os.path.join(root, 'log')
  subprocess.run(as_user + [f'{bin_dir}/initdb', '-D', data, '-A', 'trust',
                            '-U', 'postgres'], check=True,
                 capture_output=True)
  subprocess.run(as_user + [f'{bin_dir}/pg_ctl', '-D', data, '-l', log, '-w',
                            '-o', f"-k {root} -c listen_addresses=''",
                            'start'], check=True, capture_output=True)
  try:
    yield f'postgresql://postgres@/postgres?host={root}'
  finally:
    subprocess.run(as_user + [f'{bin_dir}/pg_ctl', '-D', data, '-m', 'fast',
                              '-w', 'stop'], check=False, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def test_two_processes_share_one_postgresql_study(tmp_path, postgres_url):
  config = tiny_config(tmp_path, TWO, steps=10)
  workdir = str(tmp_path / 'sweep')
  run_two_processes(config, workdir, postgres_url)
  check_each_trial_ran_once(workdir, 2)
  assert not os.path.exists(os.path.join(workdir, 'study.db'))


# ------------------------------------------------------------ bad specs --
BAD_SPECS = [
    ("dict(grid={'optimizer.lr': [1e-3]}, objective='eval/loss', "
     "direction='min')",
     "error: sweep spec: unknown config field 'optimizer.lr' in "
     "grid['optimizer.lr']"),
    ("dict(grid={'optimizer.learning_rate': []}, objective='eval/loss', "
     "direction='min')",
     "error: sweep spec: grid['optimizer.learning_rate']: empty list of "
     "values"),
    ("dict(ranges={'model.dropout_rate': ('uniform', 0.3, 0.1)}, "
     "objective='eval/loss', direction='min', budget=4)",
     "error: sweep spec: ranges['model.dropout_rate']: empty range "
     "(uniform from 0.3 to 0.1)"),
    ("dict(ranges={'optimizer.learning_rate': ('loguniform', 0.0, 1e-2)}, "
     "objective='eval/loss', direction='min', budget=4)",
     "error: sweep spec: ranges['optimizer.learning_rate']: log range must "
     "be above zero (low is 0.0)"),
    ("dict(grid={'optimizer.learning_rate': [1e-3]}, objective='eval/bleu',"
     " direction='max')",
     "error: sweep spec: objective 'eval/bleu' is not reported by task "
     "'seq2seq' with this config; it reports eval/accuracy, eval/loss, "
     "eval/perplexity"),
    ("dict(grid={'optimizer.learning_rate': [1e-3, 3e-3], "
     "'model.num_layers': [1, 2]}, objective='eval/loss', direction='min', "
     "budget=3)",
     'error: sweep spec: budget=3 is smaller than the grid (4 settings)'),
]


@pytest.mark.parametrize('sweep,message', BAD_SPECS,
                         ids=['field', 'empty_list', 'empty_range',
                              'log_zero', 'metric', 'budget'])
def test_bad_spec_fails_in_one_line_before_any_study(tmp_path, sweep,
                                                     message):
  config = tiny_config(tmp_path, sweep)
  workdir = tmp_path / 'sweep'
  result = subprocess.run(sweep_command(config, workdir), cwd=REPO,
                          env=sweep_env(), capture_output=True, text=True,
                          timeout=60, check=False)
  assert result.returncode == 1
  assert result.stderr.strip() == message
  assert not workdir.exists()  # no study.db, no trials


# ------------------------------------------------ shipped sweeps, devices --
@pytest.mark.parametrize('path,arg', [('configs/default.py', None),
                                      ('configs/multi30k_en_de.py',
                                       'steps=2000'),
                                      ('configs/causal_lm.py',
                                       'data=shakespeare')])
def test_shipped_sweeps_are_valid_and_start_from_the_shipped_setting(
    path, arg):
  module = spec_lib.load_config_module(str(REPO / path))
  config = module.get_config(arg) if arg else module.get_config()
  spec = spec_lib.parse_spec(
      spec_lib.sweep_from_module(module, path, arg), config, {})
  study = study_lib.open_study(
      optuna.storages.InMemoryStorage(), 'test', spec, 'fingerprint',
      study_lib.make_sampler(spec, 'salt'),
      study_lib.make_pruner(spec, config.num_train_steps))
  asked = [study.ask() for _ in range(3)]
  params = [study_lib.suggest(trial, spec) for trial in asked]
  assert sorted(params[0]) == sorted(spec.fields)
  if spec.settings:  # the shipped setting first, then the sampler's
    shipped = {name: functools.reduce(lambda node, key: node[key],
                                      name.split('.'), config)
               for name in spec.fields}
    assert params[0] == shipped
    assert params[1] != params[0] and params[2] != params[1]
    for name, r in spec.ranges.items():
      if r.kind in ('uniform', 'loguniform', 'int'):
        assert r.low <= params[1][name] <= r.high
  else:  # a grid: distinct points
    assert len({tuple(p.values()) for p in params}) == 3


def test_devices_are_split_between_workers():
  gpu = split_devices(2, ['0', '1', '2', '3'], [0, 1])
  assert [s.gpus for s in gpu] == [('0', '2'), ('1', '3')]
  assert gpu[1].env({})['CUDA_VISIBLE_DEVICES'] == '1,3'
  cpu = split_devices(2, [], [0, 1, 2, 3, 4])
  assert [s.cpus for s in cpu] == [(0, 1, 2), (3, 4)]
  env = cpu[1].env({'XLA_FLAGS': '--xla_foo=1'})
  assert env['XLA_FLAGS'] == ('--xla_foo=1 --xla_cpu_multi_thread_eigen=false '
                              'intra_op_parallelism_threads=2')
  assert env['OMP_NUM_THREADS'] == '2'
  assert split_devices(1, [], [0, 1]) == [split_devices(1, [], [0, 1])[0]]
  assert split_devices(1, [], [0, 1])[0].env({'A': '1'}) == {'A': '1'}
  with pytest.raises(ValueError, match='--workers=3 but 2 GPU'):
    split_devices(3, ['0', '1'], [0])


def test_metrics_follower_rereads_the_file_a_resumed_run_rewrote(tmp_path):
  # What a trial killed after logging step 30 but checkpointing only step
  # 20 leaves, and what its resumed train.py then does to metrics.jsonl.
  from sweeping.trials import MetricsFollower
  from training.metrics_writer import MetricsWriter
  first = MetricsWriter(str(tmp_path), start_step=0)
  for step in (10, 20, 30):
    first.write(step, {'eval/loss': 1.0 / step})
  first.close()
  follower = MetricsFollower(str(tmp_path / 'metrics.jsonl'))
  assert [r['step'] for r in follower.new_records()] == [10, 20, 30]
  resumed = MetricsWriter(str(tmp_path), start_step=20)  # drops step 30
  for step in (30, 40, 50, 60):
    resumed.write(step, {'eval/loss': 2.0 / step})
  resumed.close()
  records = follower.new_records()
  assert [r['step'] for r in records] == [10, 20, 30, 40, 50, 60]
  assert records[-1]['eval/loss'] == 2.0 / 60
  assert follower.new_records() == []
