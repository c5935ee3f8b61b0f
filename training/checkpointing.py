"""Orbax checkpoints of the train state and the input iterator's position.

The workdir's `checkpoints/` keeps the last K saves; running the same
command again resumes from the newest one. Shapes are checked against the
configured model before restoring, so a mismatch names the parameter path.
Saved arrays are global (replicated, or sharded over a mesh) and restore
into the shardings asked for (`Parallel.abstract_state`), so a checkpoint
moves between meshes and device counts.
training/saved_params.py reads only the parameters of a finished run.
"""
import json
import logging
import math
import os
import shutil
import sys
import time
import traceback
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp

from errors import UserError

MANIFEST = 'manifest.json'
DAMAGED_DIR = 'damaged_checkpoints'


class ShapeMismatch(UserError):
  """The checkpoint is readable but holds another model: a config error,
  never a reason to fall back to an older checkpoint."""


class CheckpointSaveError(RuntimeError):
  """A background save failed or did not finish in time: not bad input
  (train.py reports a full disk in one line, anything else with its
  traceback)."""


class OrbaxErrorLog(logging.Filter):
  """Keeps orbax's own ERROR records (a failed background save, logged
  with its whole traceback: 358 lines for a full disk) off the console.
  Every such failure is raised again by `Checkpointer.poll`/`wait`, which
  train.py reports in one line; `last` keeps the newest record's gist for
  the failures orbax only logs."""

  def __init__(self):
    super().__init__()
    self.last = ''

  def filter(self, record: logging.LogRecord) -> bool:
    orbax = f'{os.sep}orbax{os.sep}'
    # asyncio reports orbax's unawaited failed writes at exit, as
    # 'Task exception was never retrieved' with the task's orbax coroutine,
    # or 'Future exception was never retrieved' with tensorstore's error,
    # which names only the file in orbax's temporary folder.
    if record.levelno >= logging.ERROR and (
        orbax in record.pathname or (record.name == 'asyncio' and any(
            mark in _text_of(record)
            for mark in (orbax, '.orbax-checkpoint-tmp')))):
      self.last = first_line(record.getMessage())
      return False
    return True


def _text_of(record: logging.LogRecord) -> str:
  """A record's message with its traceback, if any."""
  text = record.getMessage()
  if record.exc_info and record.exc_info[0]:
    text += ''.join(traceback.format_exception(*record.exc_info))
  return text


ORBAX_ERRORS = OrbaxErrorLog()


def quiet_orbax_errors():
  """Installs ORBAX_ERRORS on the root logger's handlers (absl's among
  them), where every logger's records end; --show_traceback leaves it out."""
  for handler in logging.getLogger().handlers:
    if ORBAX_ERRORS not in handler.filters:
      handler.addFilter(ORBAX_ERRORS)
  if sys.unraisablehook is not _quiet_closed_loop:
    _quiet_closed_loop.previous = sys.unraisablehook
    sys.unraisablehook = _quiet_closed_loop


def _save_failed(message: str) -> CheckpointSaveError:
  """The error for a failed save. The save's abandoned write coroutines
  are reported as 'never awaited' when the process exits; the error says
  what failed, so those warnings are silenced from here on."""
  warnings.filterwarnings('ignore', category=RuntimeWarning,
                          message=r"coroutine '.*' was never awaited")
  return CheckpointSaveError(message)


def _quiet_closed_loop(unraisable):
  """After a failed background save, tensorstore's write callbacks can
  still reach the event loop orbax has closed. Each such callback reports
  `RuntimeError: Event loop is closed` as an unraisable exception (up to
  hundreds of bare tracebacks on a full disk). The failure itself is
  raised by `Checkpointer.poll`/`wait`, so those reports are dropped."""
  value = unraisable.exc_value
  if isinstance(value, RuntimeError) and str(value) == 'Event loop is closed':
    return
  _quiet_closed_loop.previous(unraisable)


class Checkpointer:
  """Saves when asked (train.py decides when), keeps the last `keep`.

  Each finished save gets `<step>/manifest.json` (the size of every file),
  because orbax restores some truncated files without complaint; restore
  checks it and falls back past damaged checkpoints.
  """

  def __init__(self, workdir: str, keep: int, timeout_s: float = 600.0,
               log=print):
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir, 'checkpoints')
    self.timeout_s = timeout_s
    self._log = log
    self._unlisted = []  # saved steps without a manifest yet
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True,
        # Async saves overlap I/O with training; `wait()` before reading.
        enable_async_checkpointing=True,
        # Step directories are made in save() itself: made in the
        # background, a failure there left orbax's other threads waiting
        # five minutes for a signal that never came.
        async_options=ocp.AsyncOptions(
            timeout_secs=max(1, math.ceil(timeout_s)),  # orbax: whole s > 0
            create_directories_asynchronously=False))
    try:
      os.makedirs(self.directory, exist_ok=True)
      os.listdir(self.directory)
      self.manager = ocp.CheckpointManager(
          self.directory, options=options, item_handlers=item_handlers())
    except OSError as e:
      raise UserError(f'checkpoint directory {self.directory} cannot be '
                      f'used: {e.strerror or e}') from None

  def latest_step(self):
    return self.manager.latest_step()

  def all_steps(self):
    return list(self.manager.all_steps())

  def save(self, step: int, state, data_state: dict):
    """Saves `state` (global arrays, replicated or sharded over a mesh: each
    host writes its own shards) and the data position."""
    self.poll()
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state)), force=True)
    self._unlisted.append(step)

  def poll(self):
    """Once a background save has ended: raises if it failed, else writes
    its manifest. Cheap (train.py calls it every step), and never waits on
    a save in progress."""
    if not self._unlisted or self.manager.is_saving_in_progress():
      return
    try:
      self.manager.check_for_errors()
    except Exception as e:  # pylint: disable=broad-except
      raise _save_failed(f'saving a checkpoint in {self.directory} '
                         f'failed: {first_line(e)}') from e
    # Orbax logs some failures and drops the step instead of raising: the
    # newest save must exist (max_to_keep deletes only older ones).
    newest = os.path.join(self.directory, str(self._unlisted[-1]))
    if not os.path.isdir(newest):
      raise _save_failed(f'saving checkpoint {newest} failed: '
                         f'{ORBAX_ERRORS.last or "see the log above"}')
    self._write_manifests()

  def wait(self):
    """Blocks until every save is durable, at most `timeout_s` seconds."""
    deadline = time.monotonic() + self.timeout_s
    while self.manager.is_saving_in_progress():
      if time.monotonic() > deadline:
        raise CheckpointSaveError(
            f'saving checkpoint {self._unlisted[-1:]} in {self.directory} '
            f'did not finish within {self.timeout_s:g} s '
            '(config.checkpoint_timeout_s)')
      time.sleep(0.05)
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      raise _save_failed(f'saving a checkpoint in {self.directory} '
                         f'failed: {first_line(e)}') from e
    self.poll()

  def _write_manifests(self):
    if jax.process_index() == 0:
      for step in self._unlisted:
        folder = os.path.join(self.directory, str(step))
        if os.path.isdir(folder):  # not yet deleted by max_to_keep
          _write_json(os.path.join(folder, MANIFEST), file_sizes(folder))
    self._unlisted = []

  def restore_newest(self, abstract_state):
    """(step, state, data_state) from the newest checkpoint that reads
    back whole, or None if there is none. Damaged ones are named, with the
    reason, and moved to `workdir/damaged_checkpoints/` so that the run can
    save that step again. A shape mismatch raises ShapeMismatch."""
    skipped = []
    for step in sorted(self.all_steps(), reverse=True):
      try:
        state, data_state = self.restore(step, abstract_state)
      except ShapeMismatch:
        raise
      except Exception as e:  # pylint: disable=broad-except
        self._log(f'skipping checkpoint {self.directory}/{step}: '
                  f'{first_line(e)}')
        skipped.append(step)
        continue
      self._set_aside(skipped)
      return step, state, data_state
    if skipped:
      raise UserError(
          f'no checkpoint in {self.directory} can be read (steps '
          f'{sorted(skipped)} are damaged); move them away to start afresh')
    return None

  def check_newest_shapes(self, abstract_state):
    """Raises ShapeMismatch if the newest checkpoint holds another model (a
    damaged one is left to restore_newest)."""
    step = self.latest_step()
    try:
      metadata = self.manager.item_metadata(step)['state']
    except Exception:  # pylint: disable=broad-except
      return
    check_shapes(metadata, abstract_state, f'{self.directory}/{step}')

  def restore(self, step: int, abstract_state):
    """Restores `step` into the structure/shapes/shardings of
    `abstract_state` (a pytree of jax.ShapeDtypeStruct): each device reads
    only its shards, so a state saved under one mesh restores under any
    other. Returns (state, data_state)."""
    where = f'{self.directory}/{step}'
    check_manifest(where)
    check_shapes(self.manager.item_metadata(step)['state'], abstract_state,
                 where)
    restored = self.manager.restore(
        step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=ocp.args.JsonRestore()))
    return restored['state'], restored['data']

  def _set_aside(self, steps):
    if not steps:
      return
    if jax.process_index() == 0:
      for step in steps:
        target = os.path.join(self.workdir, DAMAGED_DIR, f'{step}')
        if os.path.exists(target):
          target += f'.{int(time.time())}'
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(os.path.join(self.directory, str(step)), target)
        self._log(f'moved damaged checkpoint {step} to {target}')
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices('checkpoints set aside')
    self.manager.reload()

  def average_params(self, steps, abstract_state):
    """Mean of the parameters saved at `steps` (checkpoint averaging, as
    Vaswani et al. 2017 did over the last 5 or 20 checkpoints)."""
    return mean_params(
        (self.restore(step, abstract_state)[0].params for step in steps),
        abstract_state.params)

  def close(self):
    """Waits for outstanding saves (bounded), then releases orbax."""
    try:
      self.wait()
    finally:
      self.manager.close()


def file_sizes(folder: str) -> dict:
  """{relative path: bytes} of every file under `folder` but the manifest."""
  sizes = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, folder)
      if rel != MANIFEST:
        sizes[rel] = os.path.getsize(path)
  return dict(sorted(sizes.items()))


def check_manifest(folder: str):
  """Raises ValueError naming the first file that is missing or has
  another size than when it was saved (no manifest: nothing to check)."""
  path = os.path.join(folder, MANIFEST)
  if not os.path.exists(path):
    return
  with open(path, encoding='utf-8') as f:
    expected = json.load(f)
  actual = file_sizes(folder)
  for rel, size in expected.items():
    if rel not in actual:
      raise UserError(f'{rel} is missing')
    if actual[rel] != size:
      raise UserError(f'{rel} has {actual[rel]} bytes, {size} when saved')


def _write_json(path: str, value):
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    json.dump(value, f, indent=1)
  os.replace(path + '.tmp', path)


def first_line(error: BaseException, limit: int = 200) -> str:
  """The gist of a (possibly 150-line) orbax/tensorstore error."""
  text = ' '.join(str(error).split()) or type(error).__name__
  return text if len(text) <= limit else text[:limit] + '...'


def mean_params(trees, like):
  """Mean of parameter pytrees, summed in float64, in the dtypes of `like`
  (the mean of one tree is that tree, bit for bit)."""
  total, count = None, 0
  for params in trees:
    params = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    total = params if total is None else jax.tree.map(np.add, total, params)
    count += 1
  return jax.tree.map(lambda t, a: (t / count).astype(a.dtype), total, like)


def item_handlers():
  """What each item of a checkpoint is: the train state and the data state."""
  return {'state': ocp.StandardCheckpointHandler(),
          'data': ocp.JsonCheckpointHandler()}


def check_shapes(saved_metadata, abstract_state, where: str):
  """Raises one line naming the first parameter whose shape disagrees."""
  saved = _flatten(saved_metadata)
  expected = _flatten(abstract_state)
  missing = sorted(set(expected) - set(saved))
  if missing:
    raise ShapeMismatch(
        f'checkpoint {where} has no entry {missing[0]} that the configured '
        f'model needs ({len(missing)} missing)')
  for path, leaf in expected.items():
    got = tuple(saved[path].shape) if hasattr(saved[path], 'shape') else None
    if got is not None and got != tuple(leaf.shape):
      raise ShapeMismatch(
          f'checkpoint {where}: parameter {path} has shape {got} but the '
          f'configured model expects {tuple(leaf.shape)}')


def _flatten(tree):
  flat, _ = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: hasattr(x, 'shape') and not isinstance(x, dict))
  return {'/'.join(_key_name(k) for k in path): leaf for path, leaf in flat}


def _key_name(key):
  for attr in ('key', 'name', 'idx'):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)

