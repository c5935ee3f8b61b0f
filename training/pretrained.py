"""Starting a run from pre-trained weights (`config.init_from`).

`init_from` is either another run's workdir (its newest orbax checkpoint,
e.g. pre-training -> fine-tuning) or a Hugging Face-layout directory
(config.json + safetensors/bin, see models/hf/). Parameters whose
path and shape match are taken from the checkpoint; the rest (new heads)
keep their fresh initialisation.
"""
import logging
import os

from flax import traverse_util
import jax
import jax.numpy as jnp

from errors import UserError
from models import hf
from training import saved_params


def restore_pretrained(params, path: str, report=logging.info):
  """Returns `params` with every matching entry replaced from `path`
  (whose family the run's task has checked: `Task.check_init_from`);
  `report` gets the line that lists what was restored and what is fresh
  (train.py prints it)."""
  check_init_from(path)
  if not is_workdir(path):
    return restore_hf_checkpoint(params, path, report)
  # The same matching as for Hugging Face checkpoints: by path, scanned or
  # unscanned layer layouts, shape mismatches named.
  return merge_pretrained(params, load_workdir_params(path), path, report)


def check_init_from(path: str):
  """One line if `path` cannot seed a run: not a directory, or neither a
  workdir nor a Hugging Face directory. Cheap: train.py calls it (through
  `Task.check_init_from`, which adds the task's family rule) before
  touching its own workdir."""
  if not os.path.isdir(path):
    raise UserError(f'config.init_from={path} is not a directory')
  if not is_workdir(path) and not os.path.exists(
      os.path.join(path, 'config.json')):
    raise UserError(f'config.init_from={path} is neither a workdir (no '
                    'checkpoints/) nor a Hugging Face directory (no '
                    'config.json)')


def is_workdir(path: str) -> bool:
  """Another run's workdir, as opposed to a Hugging Face directory."""
  # A workdir also holds a config.json (its run's): look for checkpoints/.
  return os.path.isdir(os.path.join(path, 'checkpoints'))


def load_workdir_params(workdir: str):
  """The parameters of the newest checkpoint in `workdir/checkpoints`."""
  return saved_params.restore_params(workdir, name='config.init_from').params


def _align_backbone(params: dict, pretrained: dict) -> dict:
  """Puts the BERT encoder of `pretrained` where `params` keeps it."""
  if 'bert' in params and 'bert' not in pretrained and \
      'token_embedding' in pretrained:
    return {'bert': pretrained}
  if 'bert' in pretrained and 'bert' not in params and \
      'token_embedding' in params:
    return pretrained['bert']
  return pretrained


def merge_pretrained(params, pretrained, source: str = 'pretrained',
                     report=logging.info):
  """Copies each leaf of `pretrained` into `params` where the path exists.

  Paths only in `params` (new heads) keep their initial values; paths only
  in `pretrained` (old heads) are dropped. Layer layouts (scanned or not)
  are matched to `params`. Raises on a shape mismatch, naming the path.
  """
  params = dict(params)
  pretrained = _align_backbone(params, dict(pretrained))
  target_flat = traverse_util.flatten_dict(params, sep='/')
  scanned = any('/layers/' in p for p in target_flat)
  pretrained = hf.stack_layers(hf.unstack_layers(pretrained)) if scanned else \
      hf.unstack_layers(pretrained)
  source_flat = traverse_util.flatten_dict(pretrained, sep='/')
  restored, kept = [], []
  out = {}
  for path, leaf in target_flat.items():
    if path not in source_flat:
      kept.append(path)
      out[path] = leaf
      continue
    value = source_flat[path]
    if tuple(value.shape) != tuple(leaf.shape):
      raise hf.CheckpointMismatchError(
          f'{source}: parameter {path} has shape {tuple(value.shape)} there '
          f'but {tuple(leaf.shape)} in the model')
    value = jnp.asarray(value, dtype=leaf.dtype)
    if isinstance(leaf, jax.Array) and hasattr(leaf, 'sharding'):
      value = jax.device_put(value, leaf.sharding)
    out[path] = value
    restored.append(path)
  if not restored:
    raise hf.CheckpointMismatchError(
        f'{source}: no parameter path in common with the model; model has '
        f'{hf.list_names(target_flat)}, checkpoint has {hf.list_names(source_flat)}')
  dropped = [p for p in source_flat if p not in target_flat]
  report(f'restored {len(restored)} parameter arrays from {source}; freshly '
         f'initialised: {hf.list_names(kept) if kept else "none"}; unused '
         f'from the checkpoint: {hf.list_names(dropped) if dropped else "none"}')
  return traverse_util.unflatten_dict(out, sep='/')


def restore_hf_checkpoint(params, path: str, report=logging.info):
  """params (a fresh init of the model to train) with the parameters of the
  Hugging Face checkpoint at `path` copied in wherever paths match."""
  return merge_pretrained(params, hf.load_hf_checkpoint(path).params,
                          source=path, report=report)
