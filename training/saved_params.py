"""The parameters of a finished run's checkpoints: the newest, a named step
or the mean of the last N, read onto the host without the optimizer state
(for `init_from` and the evaluate / predict / export commands).
"""
import dataclasses
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from errors import UserError
from training import checkpointing


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
    raise UserError(f'{name}={workdir} has no checkpoints/ folder')
  # The 'state' item is read as a plain pytree, so that a subtree (the
  # parameters) can be restored alone.
  handlers = dict(checkpointing.item_handlers(), state=ocp.PyTreeCheckpointHandler())
  with ocp.CheckpointManager(directory, item_handlers=handlers) as manager:
    steps = _chosen_steps(sorted(manager.all_steps()), workdir, step,
                          average_last, name)
    return RestoredParams(
        checkpointing.mean_params((_read_params(manager, s, expected) for s in steps),
                    _saved_params(manager, steps[-1])['params']), steps)


def _chosen_steps(saved, workdir, step, average_last, name):
  if not saved:
    raise UserError(f'{name}={workdir} holds no checkpoint')
  if step is not None and average_last:
    raise UserError('--step and --average_last exclude each other')
  if step is not None:
    if step not in saved:
      raise UserError(f'--step={step}: {workdir} has checkpoints at steps '
                      f'{", ".join(map(str, saved))} only')
    return [step]
  if average_last:
    if not 1 <= average_last <= len(saved):
      raise UserError(f'--average_last={average_last}: {workdir} has '
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
  folder = f'{manager.directory}/{step}'
  try:
    checkpointing.check_manifest(folder)
  except ValueError as e:
    raise UserError(f'checkpoint {folder} is damaged: {e}') from None
  abstract = _saved_params(manager, step)
  if expected is not None:
    checkpointing.check_shapes(abstract['params'], expected,
                 f'{manager.directory}/{step}')
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore(
          abstract, ocp.checkpoint_utils.construct_restore_args(abstract),
          partial_restore=True)))
  return jax.tree.map(np.asarray, restored['state']['params'])
