"""The training loop: device-count invariance, resume, overrides, errors."""
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import conftest
from configs import default
from decoding import sampling
from tasks import get_task
from training import loop
from training.metrics_writer import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# A tiny reversal run: 6 steps, 8 examples per device on 8 devices. As
# dotted config names, so that the train.py processes below get the same.
TINY = {'model.d_model': 32, 'model.d_ff': 64, 'batch_size': 16,
        'eval_batch_size': 16, 'data.num_eval_examples': 20,
        'num_train_steps': 6, 'log_every': 1, 'eval_every': 6,
        'checkpoint_every': 3,
        'decode.beam_size': 0,  # these tests are about training, not decoding
        'optimizer.warmup_steps': 2}


def tiny_config(**overrides):
  config = default.get_config()
  config.update_from_flattened_dict({**TINY, **overrides})  # dotted names
  return config


def train_losses(workdir):
  return np.array([r['train/loss'] for r in read_metrics(workdir)
                   if 'train/loss' in r])


def run(tmp_path, name, **overrides):
  workdir = str(tmp_path / name)
  result = loop.train_and_evaluate(tiny_config(**overrides), workdir)
  return workdir, result


@pytest.fixture(scope='module')
def shared_run(tmp_path_factory):
  """(**overrides) -> (workdir, result) of tiny_config(**overrides), trained
  once for the module: several tests compare against the same runs. Their
  workdirs are only read."""
  done = {}

  def get(**overrides):
    key = tuple(sorted(overrides.items()))
    if key not in done:
      workdir = str(tmp_path_factory.mktemp('shared_run'))
      done[key] = workdir, loop.train_and_evaluate(tiny_config(**overrides),
                                                    workdir)
    return done[key]
  return get


@pytest.fixture(scope='module')
def one_device_losses(shared_run):
  """The train losses of the run on one device: every other device count
  and process count must give them."""
  losses = train_losses(shared_run(num_devices=1)[0])
  assert len(losses) == 6 and losses[-1] < losses[0]
  return losses


@pytest.mark.parametrize('parallelism', ['pmap', 'mesh'])
def test_eight_devices_match_one_device(shared_run, one_device_losses,
                                        parallelism):
  assert jax.device_count() == 8
  workdir, _ = shared_run(parallelism=parallelism)
  np.testing.assert_allclose(train_losses(workdir), one_device_losses,
                             rtol=1e-5)


def test_gradient_accumulation_gives_the_same_updates(tmp_path, shared_run):
  whole, _ = shared_run(parallelism='mesh')
  accumulated, _ = run(tmp_path, 'accum', parallelism='mesh',
                       grad_accum_steps=2)
  np.testing.assert_allclose(train_losses(accumulated), train_losses(whole),
                             rtol=1e-5)


@pytest.mark.parametrize('parallelism', ['pmap', 'mesh'])
def test_stopped_and_resumed_run_equals_uninterrupted_run(tmp_path,
                                                          shared_run,
                                                          parallelism):
  config = tiny_config(parallelism=parallelism)
  straight_dir, straight = shared_run(parallelism=parallelism)
  workdir = str(tmp_path / 'resumed')
  loop.train_and_evaluate(config, workdir, stop_at_step=4)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints')))[-1] == '4'
  resumed = loop.train_and_evaluate(config, workdir)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               straight.state.params, resumed.state.params)
  assert resumed.eval_metrics == pytest.approx(straight.eval_metrics)
  np.testing.assert_allclose(train_losses(workdir), train_losses(straight_dir),
                             rtol=1e-6)
  # Only the newest `keep_checkpoints` saves remain.
  assert len(os.listdir(os.path.join(workdir, 'checkpoints'))) <= 3


def test_workdir_holds_tensorboard_and_jsonl_metrics(tmp_path):
  workdir, result = run(tmp_path, 'w', **{'decode.beam_size': 2})
  assert os.listdir(os.path.join(workdir, 'tensorboard'))
  records = read_metrics(workdir)
  assert {'train/loss', 'train/steps_per_second'} <= set(records[0])
  # The file holds the run's own final metrics, decoded ones included ...
  assert records[-1]['step'] == 6
  for name, value in result.eval_metrics.items():
    assert records[-1][name] == pytest.approx(value), name
  assert 'eval/exact_match' in records[-1]
  # ... and a run that learns: the loss falls over its six steps.
  losses = train_losses(workdir)
  assert len(losses) == 6 and losses[-1] < losses[0] - 0.1, losses


def test_the_metrics_writer_does_not_import_torch():
  """tensorboardX imports torch where it can: 1.35 s of every run's start
  (training/metrics_writer.py); the events are still written (above)."""
  code = ('import sys\n'
          'from training.metrics_writer import summary_writer_class\n'
          'summary_writer_class()\n'
          'print(sorted(m for m in ("torch", "tensorboardX") '
          'if m in sys.modules))')
  done = subprocess.run([sys.executable, '-c', code], cwd=REPO, check=True,
                        capture_output=True, text=True, timeout=120)
  assert done.stdout.split('\n')[-2] == "['tensorboardX']", done.stdout


def test_beam_search_of_width_one_equals_greedy_on_the_model():
  config = tiny_config()
  task = get_task(config)
  params = task.init_variables(jax.random.key(3))['params']
  batch = next(iter(task.eval_batches(8)))
  config.decode.beam_size = 1
  config.decode.alpha = 0.0
  beam = task.predict(params, batch)
  model = task.build_model(train=False, decode=True)
  inputs = jnp.asarray(batch['inputs'])
  encoded = model.apply({'params': params}, inputs, method='encode')
  max_len = task.target_length()
  cache = model.init(jax.random.key(0), inputs,
                     jnp.zeros((8, max_len), jnp.int32))['cache']

  def tokens_to_logits(ids, cache):
    logits, v = model.apply({'params': params, 'cache': cache}, encoded,
                            inputs, ids, method='decode_logits',
                            mutable=['cache'])
    return logits[:, -1], v['cache']

  greedy = sampling.greedy_decode(tokens_to_logits, cache, batch_size=8,
                                  max_decode_len=max_len)
  np.testing.assert_array_equal(np.asarray(beam), np.asarray(greedy))


def test_checkpoint_of_another_shape_names_the_parameter(tmp_path):
  workdir = str(tmp_path / 'w')
  loop.train_and_evaluate(tiny_config(num_train_steps=3), workdir)
  with pytest.raises(ValueError, match=r'parameter params/\S+/ffn/wi/\S+ has '
                     r'shape \(.*64,?\) but the configured model expects '
                     r'\(.*48,?\)'):
    loop.train_and_evaluate(tiny_config(**{'model.d_ff': 48}), workdir)


def test_batch_not_divisible_by_devices_is_one_clear_error(tmp_path):
  with pytest.raises(ValueError, match='config.batch_size=12 is not divisible '
                     'by the 8 devices'):
    run(tmp_path, 'w', batch_size=12)


def test_averaging_more_checkpoints_than_kept_fails_before_training(
    tmp_path):
  # 6 steps, a checkpoint every 3: only 2 exist to average.
  with pytest.raises(ValueError, match=r'config.average_last_checkpoints=3 '
                     r'but the run keeps 2 checkpoints'):
    run(tmp_path, 'avg', average_last_checkpoints=3)
  assert not os.path.exists(tmp_path / 'avg' / 'metrics.jsonl')


def test_unwritable_workdir_is_one_clear_error(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('not a directory')
  with pytest.raises(ValueError, match='--workdir=.* cannot be written'):
    loop.train_and_evaluate(tiny_config(), str(blocker / 'sub'))


def device_flags(count):
  return (f'--xla_force_host_platform_device_count={count} '
          f'{conftest.COLLECTIVE_TIMEOUTS}')


def cli(*args, env=None):
  env = {**os.environ, 'XLA_FLAGS': device_flags(1), **(env or {})}
  return subprocess.run([sys.executable, 'train.py', *args], cwd=REPO,
                        capture_output=True, text=True, env=env, timeout=300)


def test_command_line_overrides_reach_the_model(tmp_path):
  workdir = tmp_path / 'cli'
  proc = cli('--config=configs/default.py', f'--workdir={workdir}',
             '--config.model.num_layers=1', '--config.model.d_model=16',
             '--config.num_train_steps=2', '--config.decode.beam_size=0',
             '--config.log_every=1')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'step 2/2' in proc.stdout
  params = train_params_tree(workdir)
  assert 'layers_0' in params and 'layers_1' not in params
  assert params['layers_0']['ffn']['wi']['kernel'] == [16, 256]


def train_params_tree(workdir):
  """Encoder layer shapes from the checkpoint's metadata."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from training.checkpointing import item_handlers
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'),
                             item_handlers=item_handlers()) as manager:
    meta = manager.item_metadata(manager.latest_step())['state']
  stack = meta['params']['encoder']['stack']
  return jax.tree.map(lambda m: list(m.shape), stack,
                      is_leaf=lambda m: hasattr(m, 'shape'))


@pytest.mark.parametrize('flag, message', [
    ('--config.model.num_layer=2', 'num_layer'),
    ('--config.model.d_model=30', 'model.d_model=30 is not divisible by '
     'model.num_heads=4'),
])
def test_bad_command_line_input_is_one_line(tmp_path, flag, message):
  proc = cli('--config=configs/default.py', f'--workdir={tmp_path}', flag)
  assert proc.returncode != 0
  assert 'Traceback' not in proc.stderr
  lines = [l for l in proc.stderr.splitlines() if message in l]
  assert lines, proc.stderr[-2000:]


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.parametrize('parallelism, mesh', [
    pytest.param('pmap', [], id='pmap'), pytest.param('mesh', [], id='mesh'),
    # fsdp across the hosts: each holds half of every weight.
    pytest.param('mesh', ['--config.mesh.data=1', '--config.mesh.fsdp=-1'],
                 id='mesh-fsdp')])
def test_two_processes_match_one_process(tmp_path, one_device_losses,
                                         parallelism, mesh):
  """Two train.py processes of one device each give the losses of one
  device (one_device_losses: trained once in this process, instead of by a
  third train.py in every case)."""
  flags = [f'--config.{name}={value}' for name, value in TINY.items()]
  common = ['--config=configs/default.py', *flags, *mesh,
            f'--config.parallelism={parallelism}']
  multi = tmp_path / 'multi'
  port = free_port()
  env = {**os.environ, 'XLA_FLAGS': device_flags(1)}
  procs = [subprocess.Popen(
      [sys.executable, 'train.py', *common, f'--workdir={multi}',
       f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
       f'--process_id={i}'], cwd=REPO, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for i in range(2)]
  for p in procs:
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
  np.testing.assert_allclose(train_losses(str(multi)), one_device_losses,
                             rtol=1e-5)
