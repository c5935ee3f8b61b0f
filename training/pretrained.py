"""Starting a run from pre-trained weights (`config.init_from`).

`init_from` is either another run's workdir (its newest orbax checkpoint,
e.g. pre-training -> fine-tuning) or a Hugging Face-layout directory
(config.json + safetensors/bin, see models/hf_import.py). Parameters whose
path and shape match are taken from the checkpoint; the rest (new heads)
keep their fresh initialisation.
"""
import os

from models import hf_import
from training import checkpointing


def restore_pretrained(params, path: str):
  """Returns `params` with every matching entry replaced from `path`."""
  if not os.path.isdir(path):
    raise ValueError(f'config.init_from={path} is not a directory')
  # A training workdir holds a config.json too (training/run_config.py):
  # its checkpoints/ folder tells it from a Hugging Face directory.
  if (not os.path.isdir(os.path.join(path, 'checkpoints')) and
      os.path.exists(os.path.join(path, 'config.json'))):
    return hf_import.restore_hf_checkpoint(params, path)
  # The same matching as for Hugging Face checkpoints: by path, scanned or
  # unscanned layer layouts, shape mismatches named.
  return hf_import.merge_pretrained(params, load_workdir_params(path), path)


def load_workdir_params(workdir: str):
  """The parameters of the newest checkpoint in `workdir/checkpoints`."""
  return checkpointing.restore_params(workdir, name='config.init_from').params
