"""Runs a researcher can trust: graceful stop, non-finite guard, damaged
checkpoints, one run per workdir, the kept config, checked values, exact
metrics across resumes, the progress line and one-line bad input."""
import errno
import functools
import glob
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import conftest
from cli import command
from cli import flags as cli_flags  # pylint: disable=unused-import  (--config)
from configs import default
from configs.base_config import base_config
from tasks import get_task
from training import checkpointing, exit_codes, loop, parallel, run_config
from training import steps as steps_lib
from training import workdir_lock
from training.metrics_writer import MetricsWriter, read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
  """A 1-device model small enough for hundreds of steps in seconds."""
  config = default.get_config()
  config.model.d_model = 16
  config.model.d_ff = 32
  config.model.num_layers = 1
  config.num_devices = 1
  config.batch_size = 8
  config.eval_batch_size = 8
  config.data.num_eval_examples = 8
  config.num_train_steps = 6
  config.log_every = 1
  config.eval_every = 1000
  config.checkpoint_every = 3
  config.decode.beam_size = 0
  config.optimizer.warmup_steps = 2
  config.update_from_flattened_dict(overrides)  # dotted names
  return config


def as_flags(config_overrides: dict) -> list[str]:
  """The command-line flags that make `tiny_config(**overrides)`."""
  base = {'model.d_model': 16, 'model.d_ff': 32, 'model.num_layers': 1,
          'num_devices': 1, 'batch_size': 8, 'eval_batch_size': 8,
          'data.num_eval_examples': 8, 'num_train_steps': 6, 'log_every': 1,
          'eval_every': 1000, 'checkpoint_every': 3, 'decode.beam_size': 0,
          'optimizer.warmup_steps': 2, **config_overrides}
  return ['--config=configs/default.py'] + [
      f'--config.{k}={v}' for k, v in base.items()]


def start_cli(workdir, overrides):
  env = {**os.environ, 'XLA_FLAGS': (
      f'--xla_force_host_platform_device_count=1 '
      f'{conftest.COLLECTIVE_TIMEOUTS}')}
  return subprocess.Popen(
      [sys.executable, 'train.py', *as_flags(overrides),
       f'--workdir={workdir}'], cwd=REPO, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)


def saved_params(workdir, step=None):
  """{path: numpy array} of the params of a checkpoint, read with orbax."""
  directory = os.path.join(workdir, 'checkpoints')
  with ocp.CheckpointManager(
      directory, item_handlers=checkpointing.item_handlers()) as manager:
    step = manager.latest_step() if step is None else step
    state = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))['state']
  return flat(state['params'])


def flat(tree, prefix=''):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(flat(value, f'{prefix}{key}/'))
    else:
      out[prefix + key] = np.asarray(value)
  return out


def wait_for_records(workdir, count, proc=None, timeout=240):
  path = os.path.join(workdir, 'metrics.jsonl')
  deadline = time.time() + timeout
  while time.time() < deadline:
    if proc is not None and proc.poll() is not None:
      raise AssertionError(f'ended early: {proc.communicate()}')
    if os.path.exists(path) and len(open(path).readlines()) >= count:
      return
    time.sleep(0.05)
  raise AssertionError('no progress in metrics.jsonl')


def tensorboard_scalars(workdir, tag):
  """{step: value} as TensorBoard shows it: a SessionLog.START at step s
  (tensorboardX's purge_step) hides the earlier files' events at >= s."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  values = {}
  for path in sorted(glob.glob(os.path.join(workdir, 'tensorboard', '*'))):
    data = open(path, 'rb').read()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack('<Q', data[offset:offset + 8])
      event = event_pb2.Event.FromString(
          data[offset + 12:offset + 12 + length])
      offset += 16 + length
      if event.session_log.status == event_pb2.SessionLog.START:
        values = {s: v for s, v in values.items() if s < event.step}
      for value in event.summary.value:
        if value.tag == tag:
          values[event.step] = value.simple_value
  return values


# ------------------------------------------------------------ 1 and 7 --
def test_sigterm_and_ctrl_c_stop_with_checkpoint_and_resume_exactly(
    tmp_path):
  overrides = {'num_train_steps': 100, 'checkpoint_every': 1000}
  straight = str(tmp_path / 'straight')
  loop.train_and_evaluate(tiny_config(**overrides), straight)

  workdir = str(tmp_path / 'stopped')
  proc = start_cli(workdir, overrides)
  wait_for_records(workdir, 5, proc)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=240)
  assert proc.returncode == exit_codes.EXIT_STOPPED, err[-2000:]
  assert 'Traceback' not in err
  first_stop = int(os.listdir(os.path.join(workdir, 'checkpoints'))[0])
  assert 5 <= first_stop < 100
  assert f'stopped by SIGTERM at step {first_stop}, checkpoint saved' in err

  # Ctrl-C in the second leg (in this process: the same handler runs).
  pid = os.getpid()
  def interrupt():
    wait_for_records(workdir, first_stop + 5)
    os.kill(pid, signal.SIGINT)
  threading.Thread(target=interrupt, daemon=True).start()
  # The handler the run must restore: default_int_handler, or SIG_IGN
  # when pytest runs in a background job.
  before = signal.getsignal(signal.SIGINT)
  result = loop.train_and_evaluate(tiny_config(**overrides), workdir)
  assert result.stopped_by == 'SIGINT'
  second_stop = int(result.state.step)
  assert first_stop < second_stop < 100
  assert signal.getsignal(signal.SIGINT) is before

  loop.train_and_evaluate(tiny_config(**overrides), workdir)
  expected, got = saved_params(straight), saved_params(workdir)
  assert expected.keys() == got.keys()
  for name in expected:
    np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
  # Each step logged once, with the uninterrupted run's losses; TensorBoard
  # (after the purges) shows the same.
  records = [r for r in read_metrics(workdir) if 'train/loss' in r]
  assert [r['step'] for r in records] == list(range(1, 101))
  reference = [r['train/loss'] for r in read_metrics(straight)
               if 'train/loss' in r]
  np.testing.assert_array_equal([r['train/loss'] for r in records],
                                reference)
  board = tensorboard_scalars(workdir, 'train/loss')
  assert sorted(board) == list(range(1, 101))
  np.testing.assert_allclose([board[s] for s in range(1, 101)], reference,
                             rtol=1e-6)


# ------------------------------------------------------------------- 2 --
def test_overflowing_learning_rate_exits_3_at_its_step_with_finite_saves(
    tmp_path):
  # Constant schedule, 1 warmup step: step 1 has learning rate 0, step 2
  # moves every weight by ~1e30, and step 3's activations overflow.
  workdir = str(tmp_path / 'nan')
  proc = start_cli(workdir, {
      'optimizer.learning_rate': 1e30, 'optimizer.schedule': 'constant',
      'optimizer.warmup_steps': 1, 'checkpoint_every': 1,
      'keep_checkpoints': 10, 'log_every': 4, 'num_train_steps': 8})
  out, err = proc.communicate(timeout=240)
  assert proc.returncode == exit_codes.EXIT_DIVERGED, err[-2000:]
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(
      'error: non-finite loss at step 3 '), err
  saved = sorted(int(s) for s in os.listdir(
      os.path.join(workdir, 'checkpoints')))
  assert saved == [1, 2]
  for step in saved:
    for name, value in saved_params(workdir, step).items():
      assert np.isfinite(value).all(), (step, name)


def poisoned_task(monkeypatch, bad_step: int):
  """The loop's get_task, with an infinite loss on the batch of `bad_step`."""
  def get_poisoned_task(config):
    task = get_task(config)
    real_batches, real_loss = task.train_batches, task.loss_sums

    def train_batches(workdir, batch_size):
      batches = real_batches(workdir, batch_size)
      class Marked:
        """The same iterator; the `bad_step`-th batch is marked."""
        count = 0
        get_state, set_state = batches.get_state, batches.set_state

        def __next__(self):
          batch = dict(next(batches))
          self.count += 1
          batch['poison'] = np.full((len(batch['inputs']),),
                                    self.count == bad_step, np.float32)
          return batch
      return Marked()

    def loss_sums(params, batch, rng, train):  # pylint: disable=redefined-outer-name
      batch = dict(batch)
      poison = batch.pop('poison', jnp.zeros(()))
      sums = real_loss(params, batch, rng, train)
      return dict(sums, loss=sums['loss'] + jnp.where(
          jnp.any(poison > 0), jnp.inf, 0.0))
    task.train_batches, task.loss_sums = train_batches, loss_sums
    return task
  monkeypatch.setattr(loop, 'get_task', get_poisoned_task)


def test_skip_mode_skips_exactly_the_bad_step_and_counts_it(
    tmp_path, monkeypatch, capsys):
  poisoned_task(monkeypatch, bad_step=4)
  with pytest.raises(loop.Diverged, match='non-finite loss at step 4 '):
    loop.train_and_evaluate(tiny_config(), str(tmp_path / 'stop'))
  assert sorted(os.listdir(tmp_path / 'stop' / 'checkpoints')) == ['3']

  workdir = str(tmp_path / 'skip')
  result = loop.train_and_evaluate(
      tiny_config(skip_nonfinite_updates=True), workdir)
  records = [r for r in read_metrics(workdir)
             if 'train/learning_rate' in r]
  skipped = {r['step']: r['train/skipped_updates'] for r in records}
  assert skipped == {1: 0, 2: 0, 3: 0, 4: 1, 5: 0, 6: 0}
  assert 'train/loss' not in records[3]
  assert all(np.isfinite(r['train/loss']) for r in records
             if 'train/loss' in r)
  assert 'step 4: non-finite loss or gradient norm, update skipped' in (
      capsys.readouterr().out)
  for value in saved_params(workdir).values():
    assert np.isfinite(value).all()
  assert int(result.state.step) == 6


@pytest.mark.parametrize('finite', [True, False])
def test_cond_and_select_forms_of_the_guard_agree(finite):
  """apply_if_finite: the cond (CPU) and the select (GPU) give the update
  where finite and the untouched state where not."""
  params = {'w': jnp.arange(6.0).reshape(2, 3), 'b': jnp.ones(3)}
  grads = jax.tree.map(lambda p: p * 0.5 + 1.0, params)
  optimizer = optax.adam(0.1)
  opt_state = optimizer.init(params)
  def update(p, o):
    updates, o = optimizer.update(grads, o, p)
    return optax.apply_updates(p, updates), o
  expected = update(params, opt_state) if finite else (params, opt_state)
  for as_cond in (True, False):
    got = jax.jit(functools.partial(steps_lib.apply_if_finite, update=update,
                                    as_cond=as_cond))(
        jnp.asarray(finite), params=params, opt_state=opt_state)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
      np.testing.assert_allclose(a, b, rtol=1e-6)  # jit against eager


def test_cpu_step_updates_the_optimizer_state_without_copying_it():
  """The cond form's point: XLA:CPU copies no optimizer-state buffer to
  update it in place (with the select form it copies them all)."""
  config = tiny_config()
  task = get_task(config)
  dp = parallel.for_config(config, task, mode='mesh')
  optimizer = optax.adam(1e-3)
  state = dp.place_state(loop.initial_state(task, optimizer, config, dp))
  batch = dp.shard(next(iter(task.train_batches(None, config.batch_size))))
  def copies(as_cond):
    original = steps_lib.apply_if_finite
    def forced(*args, **kwargs):
      return original(*args, **dict(kwargs, as_cond=as_cond))
    steps_lib.apply_if_finite = forced
    try:
      step = dp.compile(functools.partial(
          steps_lib.train_step, task=task, optimizer=optimizer, axis_name=None,
          grad_accum_steps=1), num_sharded=1, donate_state=True,
          returns_state=True)
      text = step.lower(state, batch, jax.random.key(0)).compile().as_text()
    finally:
      steps_lib.apply_if_finite = original
    return len(re.findall(r'copy\(%state_opt_state', text))
  assert copies(as_cond=False) > 0  # what the cond form avoids
  assert copies(as_cond=True) == 0


# ------------------------------------------------------------------- 3 --
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(
    tmp_path, capsys):
  workdir = str(tmp_path / 'w')
  straight = loop.train_and_evaluate(tiny_config(), workdir)
  newest = os.path.join(workdir, 'checkpoints', '6')
  assert os.path.exists(os.path.join(newest, checkpointing.MANIFEST))
  victim = max(glob.glob(f'{newest}/state/**/d/*', recursive=True),
               key=os.path.getsize)
  os.truncate(victim, 100)
  capsys.readouterr()
  resumed = loop.train_and_evaluate(tiny_config(), workdir)
  out = capsys.readouterr().out
  rel = os.path.relpath(victim, newest)
  assert f'skipping checkpoint {newest}: {rel} has 100 bytes' in out
  assert 'resumed from step 3' in out
  assert os.path.isdir(os.path.join(workdir, 'damaged_checkpoints', '6'))
  # Steps 4-6 are trained again, to the same parameters.
  for a, b in zip(jax_leaves(straight.state.params),
                  jax_leaves(resumed.state.params)):
    np.testing.assert_array_equal(a, b)


def jax_leaves(tree):
  return [np.asarray(x) for x in flat(tree).values()]


def test_save_that_outlasts_checkpoint_timeout_s_ends_the_wait(tmp_path,
                                                              monkeypatch):
  """A background save still running `checkpoint_timeout_s` after the wait
  began (a hung file system) ends it with an error naming the step, the
  directory and the setting, instead of hanging the run."""
  checkpointer = checkpointing.Checkpointer(str(tmp_path), keep=2,
                                            timeout_s=1)
  checkpointer.save(7, {'w': jnp.arange(4.0)}, {'position': 1})
  monkeypatch.setattr(checkpointer.manager, 'is_saving_in_progress',
                      lambda: True)  # the save never ends
  start = time.monotonic()
  with pytest.raises(checkpointing.CheckpointSaveError, match=re.escape(
      f'saving checkpoint [7] in {tmp_path}/checkpoints did not finish '
      'within 1 s (config.checkpoint_timeout_s)')):
    checkpointer.wait()
  assert 1 <= time.monotonic() - start < 30
  monkeypatch.undo()  # the real save ends, and is then durable
  checkpointer.wait()
  assert os.path.exists(tmp_path / 'checkpoints' / '7' / checkpointing.MANIFEST)
  checkpointer.manager.close()


def test_checkpoint_directory_that_cannot_be_read_is_one_line(tmp_path):
  workdir = tmp_path / 'w'
  workdir.mkdir()
  (workdir / 'checkpoints').write_text('not a directory')
  with pytest.raises(ValueError, match=f'checkpoint directory {workdir}/'
                     'checkpoints cannot be used: File exists'):
    loop.train_and_evaluate(tiny_config(), str(workdir))
  assert (workdir / 'checkpoints').read_text() == 'not a directory'


# ------------------------------------------------------------------- 4 --
HOLDER = '''
import sys, time
from training import workdir_lock
with workdir_lock.hold(sys.argv[1]):
  print('held', flush=True)
  time.sleep(120)
'''


def test_second_run_refuses_and_a_dead_holder_is_taken_over(tmp_path):
  workdir = tmp_path / 'w'
  workdir.mkdir()
  holder = subprocess.Popen([sys.executable, '-c', HOLDER, str(workdir)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'held'
    with pytest.raises(workdir_lock.WorkdirLocked,
                       match=f'in use by another run \\(host '
                       f'{socket.gethostname()} pid {holder.pid} holds'):
      loop.train_and_evaluate(tiny_config(), str(workdir))
    assert sorted(os.listdir(workdir)) == ['run.lock']
  finally:
    holder.kill()  # SIGKILL: the lock file still names it
    holder.wait()
  lines = []
  with workdir_lock.hold(str(workdir), log=lines.append):
    assert f'pid {os.getpid()}' in (workdir / 'run.lock').read_text()
  assert lines == [f'taking over {workdir}/run.lock: its holder (host '
                   f'{socket.gethostname()} pid {holder.pid}) is no longer '
                   'running']
  assert (workdir / 'run.lock').read_text() == ''


# ------------------------------------------------------------------- 5 --
def test_resume_with_another_config_fails_listing_the_fields(tmp_path):
  workdir = str(tmp_path / 'w')
  loop.train_and_evaluate(tiny_config(num_train_steps=3), workdir)
  saved = json.load(open(os.path.join(workdir, 'config.json')))
  assert saved['model']['d_model'] == 16 and saved['num_train_steps'] == 3
  with pytest.raises(ValueError, match=r'another config: label_smoothing '
                     r'\(0.0 -> 0.2\), model.dropout_rate \(0.0 -> 0.1\) '
                     'differ'):
    loop.train_and_evaluate(tiny_config(
        num_train_steps=3, label_smoothing=0.2,
        **{'model.dropout_rate': 0.1}), workdir)
  # A leg killed after logging step 4 (and in the middle of step 5's line)
  # but before saving it: those records are dropped when the run resumes.
  writer = MetricsWriter(workdir)
  writer.write(4, {'train/loss': 9.0})
  writer.close()
  with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
    f.write('{"step": 5, "train/lo')
  # num_train_steps may change: the run goes on from step 3.
  result = loop.train_and_evaluate(tiny_config(), workdir)
  assert int(result.state.step) == 6
  assert json.load(open(os.path.join(workdir, 'config.json')))[
      'num_train_steps'] == 6
  records = [r for r in read_metrics(workdir) if 'train/loss' in r]
  assert [r['step'] for r in records] == [1, 2, 3, 4, 5, 6]
  assert 9.0 not in [r['train/loss'] for r in records]
  assert tensorboard_scalars(workdir, 'train/loss') == pytest.approx(
      {r['step']: r['train/loss'] for r in records})


def test_resume_accepts_fields_added_since_the_run_started(tmp_path):
  """A run saved before a field existed resumes while the field keeps its
  default (which is the old behaviour) and fails once it is changed."""
  config = tiny_config()
  run_config.save(config, str(tmp_path))
  saved = json.load(open(tmp_path / 'config.json'))
  del saved['model']['relative_attention_num_buckets']  # "added later"
  json.dump(saved, open(tmp_path / 'config.json', 'w'))
  run_config.check_resume(str(tmp_path), config, base_config())
  config.model.relative_attention_num_buckets += 1
  with pytest.raises(ValueError, match=r'relative_attention_num_buckets '
                     r'\(32 -> 33\) differ'):
    run_config.check_resume(str(tmp_path), config, base_config())


# ------------------------------------------------------------------- 6 --
@pytest.mark.parametrize('field, value', [
    ('num_train_steps', 0), ('num_train_steps', -5), ('log_every', 0),
    ('eval_every', 0), ('checkpoint_every', 0), ('grad_accum_steps', 0),
    ('batch_size', 0), ('eval_batch_size', 0), ('keep_checkpoints', 0),
    ('label_smoothing', 1.0), ('label_smoothing', -0.1),
    ('optimizer.learning_rate', -1e-3),
    ('optimizer.learning_rate', float('nan')),
    ('optimizer.learning_rate', float('inf')),
    ('data.synthetic_max_len', 0), ('data.max_length', 0),
    ('data.max_target_length', 0), ('peak_flops_per_device', -1.0),
    ('checkpoint_timeout_s', 0.0),
])
def test_invalid_value_fails_in_one_line_before_any_file(tmp_path, field,
                                                         value):
  workdir = tmp_path / 'w'
  with pytest.raises(ValueError) as error:
    loop.train_and_evaluate(tiny_config(**{field: value}), str(workdir))
  message = str(error.value)
  assert f'config.{field}=' in message and '\n' not in message
  assert not workdir.exists()


@pytest.mark.parametrize('content, message', [
    (None, 'error: --config file cannot be read: [Errno 2] No such file'),
    ('def get_config(:\n', 'line 1: invalid syntax'),
])
def test_missing_or_broken_config_file_is_one_line(tmp_path, content,
                                                   message):
  path = tmp_path / 'experiment.py'
  if content is not None:
    path.write_text(content)
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    with pytest.raises(SystemExit) as exit_:
      command.parse_flags(['train.py', f'--config={path}',
                         f'--workdir={tmp_path / "w"}'])
  finally:
    flags.FLAGS.unparse_flags()
  assert str(exit_.value.code).startswith('error: --config file')
  assert message in str(exit_.value.code)
  assert '\n' not in str(exit_.value.code)


def test_init_from_a_run_of_another_family_is_one_line(tmp_path):
  seq2seq = tmp_path / 'seq2seq_run'
  (seq2seq / 'checkpoints').mkdir(parents=True)
  (seq2seq / 'config.json').write_text(json.dumps({'task': 'seq2seq'}))
  config = tiny_config(task='causal_lm', init_from=str(seq2seq))
  with pytest.raises(ValueError, match=r"holds a run of task 'seq2seq' "
                     r"\(encoder-decoder\), but this run trains task "
                     r"'causal_lm' \(decoder LM\)"):
    loop.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not (tmp_path / 'w').exists()


# --------------------------------------------------------- bad input --
def test_full_disk_is_one_line_naming_the_workdir_and_free_space(
    tmp_path, monkeypatch):
  # A real full disk needs a root mount; the OSError that a full disk
  # raises is injected where metrics are written.
  real_write = MetricsWriter.write
  def write(self, step, metrics):
    if step == 5:
      raise OSError(errno.ENOSPC, 'No space left on device',
                    os.path.join(workdir, 'metrics.jsonl'))
    real_write(self, step, metrics)
  monkeypatch.setattr(MetricsWriter, 'write', write)
  workdir = str(tmp_path / 'w')
  with pytest.raises(ValueError, match=rf'--workdir={workdir} is out of '
                     r'space \([\d,.]+ MiB free\): .*No space left') as e:
    loop.train_and_evaluate(tiny_config(), workdir)
  assert '\n' not in str(e.value)
  # Nothing lost: the checkpoint of step 3 is whole, the lock released.
  monkeypatch.setattr(MetricsWriter, 'write', real_write)
  result = loop.train_and_evaluate(tiny_config(), workdir)
  assert int(result.state.step) == 6


# ------------------------------------------------------------------- 9 --
def test_progress_line_has_tokens_mfu_and_an_early_time_left(tmp_path,
                                                             capsys):
  config = tiny_config(num_train_steps=30, log_every=30,
                       peak_flops_per_device=1e12)
  loop.train_and_evaluate(config, str(tmp_path / 'w'))
  lines = capsys.readouterr().out.splitlines()
  early = [l for l in lines if l.startswith('step 6/30 |')]
  assert early and 'left' in early[0], lines
  last = [l for l in lines if l.startswith('step 30/30 |')][0]
  # 8 examples of 12 + 12 token positions per step.
  fields = dict(part.strip().split(' ', 1)[::-1] for part in
                last.split('|')[3:5])
  steps_per_s = float(fields['steps/s'])
  assert float(fields['tokens/s'].replace(',', '')) == pytest.approx(
      steps_per_s * 8 * 24, rel=0.02)
  assert 'MFU ' in last and 'left' in last


def test_a_checkpoint_timeout_under_a_second_saves(tmp_path):
  """orbax takes whole seconds > 0: 0.5 s was passed as 0 and crashed it."""
  checkpointer = checkpointing.Checkpointer(str(tmp_path), keep=1,
                                            timeout_s=0.5)
  checkpointer.save(3, {'w': jnp.arange(4.0)}, {'position': 1})
  checkpointer.wait()
  assert os.path.exists(tmp_path / 'checkpoints' / '3' / checkpointing.MANIFEST)
  checkpointer.manager.close()
