"""Orbax checkpoints of the train state and the input iterator's position.

The workdir's `checkpoints/` keeps the last K saves; running the same
command again resumes from the newest one. Shapes are checked against the
configured model before restoring, so a mismatch names the parameter path.
`restore_params` reads only the parameters of a finished run (the newest
checkpoint, a named step or the mean of the last N), for `init_from` and
the evaluate / predict / export commands.
"""
import dataclasses
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
    return mean_params(
        (self.restore(step, abstract_state)[0].params for step in steps),
        abstract_state.params)

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()


def mean_params(trees, like):
  """Mean of parameter pytrees, summed in float64, in the dtypes of `like`
  (the mean of one tree is that tree, bit for bit)."""
  total, count = None, 0
  for params in trees:
    params = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    total = params if total is None else jax.tree.map(np.add, total, params)
    count += 1
  return jax.tree.map(lambda t, a: (t / count).astype(a.dtype), total, like)


@dataclasses.dataclass
class RestoredParams:
  params: dict       # numpy arrays on the host
  steps: list[int]   # the checkpoints they come from (averaged if several)


def restore_params(workdir: str, expected=None, *, step: int | None = None,
                   average_last: int = 0, name: str = '--workdir'
                   ) -> RestoredParams:
  """The parameters of `workdir`'s newest checkpoint, of `step`, or the mean
  of its last `average_last` checkpoints.

  Only the parameters are read (not the optimizer state), onto the host, so
  a run saved on N devices restores on any machine. `expected` (a pytree of
  shapes, e.g. jax.eval_shape of the model's init) is checked first, naming
  the first parameter that differs. Bad input fails in one line naming
  `name`=workdir, the step, or the count.
  """
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(directory):
    raise ValueError(f'{name}={workdir} has no checkpoints/ folder')
  # The 'state' item is read as a plain pytree, so that a subtree (the
  # parameters) can be restored alone.
  handlers = dict(item_handlers(), state=ocp.PyTreeCheckpointHandler())
  with ocp.CheckpointManager(directory, item_handlers=handlers) as manager:
    steps = _chosen_steps(sorted(manager.all_steps()), workdir, step,
                          average_last, name)
    return RestoredParams(
        mean_params((_read_params(manager, s, expected) for s in steps),
                    _saved_params(manager, steps[-1])['params']), steps)


def _chosen_steps(saved, workdir, step, average_last, name):
  if not saved:
    raise ValueError(f'{name}={workdir} holds no checkpoint')
  if step is not None and average_last:
    raise ValueError('--step and --average_last exclude each other')
  if step is not None:
    if step not in saved:
      raise ValueError(f'--step={step}: {workdir} has checkpoints at steps '
                       f'{", ".join(map(str, saved))} only')
    return [step]
  if average_last:
    if not 1 <= average_last <= len(saved):
      raise ValueError(f'--average_last={average_last}: {workdir} has '
                       f'{len(saved)} checkpoints (steps '
                       f'{", ".join(map(str, saved))})')
    return saved[-average_last:]
  return saved[-1:]


def _saved_params(manager, step):
  """Shapes and dtypes of the saved parameters, as restore targets on one
  device (whatever the device count of the run that saved them)."""
  tree = manager.item_metadata(step)['state'].tree
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
      {'params': tree['params']})


def _read_params(manager, step, expected):
  abstract = _saved_params(manager, step)
  if expected is not None:
    check_shapes(abstract['params'], expected,
                 f'{manager.directory}/{step}')
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore(
          abstract, ocp.checkpoint_utils.construct_restore_args(abstract),
          partial_restore=True)))
  return jax.tree.map(np.asarray, restored['state']['params'])


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
