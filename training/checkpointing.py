"""Orbax checkpoints of the train state and the input iterator's position.

The workdir's `checkpoints/` keeps the last K saves; running the same
command again resumes from the newest one. Shapes are checked against the
configured model before restoring, so a mismatch names the parameter path.
"""
import os

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves when asked (train.py decides when), keeps the last `keep`."""

  def __init__(self, workdir: str, keep: int):
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True,
        # Async saves overlap I/O with training; `wait()` before reading.
        enable_async_checkpointing=True)
    self.manager = ocp.CheckpointManager(
        self.directory, options=options, item_handlers=item_handlers())

  def latest_step(self):
    return self.manager.latest_step()

  def all_steps(self):
    return list(self.manager.all_steps())

  def save(self, step: int, state, data_state: dict):
    """Saves `state` (globally replicated arrays) and the data position."""
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state)), force=True)

  def restore(self, step: int, abstract_state):
    """Restores `step` into the structure/shapes/shardings of
    `abstract_state` (a pytree of jax.ShapeDtypeStruct). Returns
    (state, data_state)."""
    check_shapes(self.manager.item_metadata(step)['state'], abstract_state,
                 f'{self.directory}/{step}')
    restored = self.manager.restore(
        step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=ocp.args.JsonRestore()))
    return restored['state'], restored['data']

  def average_params(self, steps, abstract_state):
    """Mean of the parameters saved at `steps` (checkpoint averaging, as
    Vaswani et al. 2017 did over the last 5 or 20 checkpoints)."""
    total = None
    for step in steps:
      params = self.restore(step, abstract_state)[0].params
      params = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
      total = params if total is None else jax.tree.map(np.add, total, params)
    return jax.tree.map(
        lambda t, a: (t / len(steps)).astype(a.dtype), total,
        abstract_state.params)

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()


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
    raise ValueError(f'checkpoint {where} has no entry {missing[0]} that the '
                     f'configured model needs ({len(missing)} missing)')
  for path, leaf in expected.items():
    got = tuple(saved[path].shape) if hasattr(saved[path], 'shape') else None
    if got is not None and got != tuple(leaf.shape):
      raise ValueError(
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


def abstract_like(tree, sharding):
  """Pytree of ShapeDtypeStruct with one sharding, for restore targets."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding),
      tree)
