"""Starting a run from pre-trained weights (`config.init_from`).

`init_from` is either another run's workdir (its newest orbax checkpoint,
e.g. pre-training -> fine-tuning) or a Hugging Face-layout directory
(config.json + safetensors/bin, see models/hf_import.py). Parameters whose
path and shape match are taken from the checkpoint; the rest (new heads)
keep their fresh initialisation.
"""
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from models import hf_import
from training import checkpointing


def restore_pretrained(params, path: str):
  """Returns `params` with every matching entry replaced from `path`."""
  if not os.path.isdir(path):
    raise ValueError(f'config.init_from={path} is not a directory')
  if os.path.exists(os.path.join(path, 'config.json')):
    return hf_import.restore_hf_checkpoint(params, path)
  # The same matching as for Hugging Face checkpoints: by path, scanned or
  # unscanned layer layouts, shape mismatches named.
  return hf_import.merge_pretrained(params, load_workdir_params(path), path)


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
