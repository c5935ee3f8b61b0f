"""Starting a run from pre-trained weights (`config.init_from`).

`init_from` is either another run's workdir (its newest orbax checkpoint,
e.g. pre-training -> fine-tuning) or a Hugging Face-layout directory
(config.json + safetensors/bin, see infra/hf_import.py). Parameters whose
path and shape match are taken from the checkpoint; the rest (new heads)
keep their fresh initialisation.
"""
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from infra import checkpointing


def restore_pretrained(params, path: str):
  """Returns `params` with every matching entry replaced from `path`."""
  if not os.path.isdir(path):
    raise ValueError(f'config.init_from={path} is not a directory')
  if os.path.exists(os.path.join(path, 'config.json')):
    from infra import hf_import  # pylint: disable=g-import-not-at-top
    return hf_import.restore_pretrained(params, path)
  pretrained = load_workdir_params(path)
  return merge_params(params, pretrained, path)


def load_workdir_params(workdir: str):
  """The parameters of the newest checkpoint in `workdir/checkpoints`."""
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(directory):
    raise ValueError(f'config.init_from={workdir} has no checkpoints/ folder')
  with ocp.CheckpointManager(
      directory, item_handlers=checkpointing.item_handlers()) as mngr:
    step = mngr.latest_step()
    if step is None:
      raise ValueError(f'config.init_from={workdir} holds no checkpoint')
    restored = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))
  return jax.tree.map(np.asarray, restored['state']['params'])


def merge_params(params, pretrained, source: str):
  """Copies every entry of `pretrained` whose path and shape match `params`.

  Raises if nothing matches (almost surely the wrong checkpoint) or if a
  shared path has a different shape (names the path and both shapes).
  """
  target = traverse_util.flatten_dict(params, sep='/')
  loaded = traverse_util.flatten_dict(pretrained, sep='/')
  matched = 0
  for path, value in loaded.items():
    if path not in target:
      continue
    if tuple(target[path].shape) != tuple(value.shape):
      raise ValueError(
          f'{source}: parameter {path} has shape {tuple(value.shape)} but the '
          f'configured model expects {tuple(target[path].shape)}')
    target[path] = np.asarray(value, dtype=target[path].dtype)
    matched += 1
  if not matched:
    raise ValueError(f'{source}: no parameter path matches the configured '
                     'model')
  return traverse_util.unflatten_dict(target, sep='/')
