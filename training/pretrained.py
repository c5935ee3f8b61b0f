"""Starting a run from pre-trained weights (`config.init_from`).

`init_from` is either another run's workdir (its newest orbax checkpoint,
e.g. pre-training -> fine-tuning) or a Hugging Face-layout directory
(config.json + safetensors/bin, see models/hf_import.py). Parameters whose
path and shape match are taken from the checkpoint; the rest (new heads)
keep their fresh initialisation.
"""
import os

from models import hf_import
from training import checkpointing, run_config

# The network family of each config.task: weights move only within one.
FAMILY = {'seq2seq': 'encoder-decoder', 'causal_lm': 'decoder LM',
          'bert_pretraining': 'BERT', 'classification': 'BERT',
          'extractive_qa': 'BERT'}


def restore_pretrained(params, path: str, task: str | None = None):
  """Returns `params` with every matching entry replaced from `path`.

  `task` (config.task of the run) is checked against the family of a
  workdir's run, so that an encoder-decoder never seeds a BERT model.
  """
  check_init_from(path, task)
  if not _is_workdir(path):
    return hf_import.restore_hf_checkpoint(params, path)
  # The same matching as for Hugging Face checkpoints: by path, scanned or
  # unscanned layer layouts, shape mismatches named.
  return hf_import.merge_pretrained(params, load_workdir_params(path), path)


def check_init_from(path: str, task: str | None):
  """One line if `path` cannot seed a run of `task`: not a directory, or a
  workdir whose run trained another network family. Cheap: train.py calls
  it before touching its own workdir."""
  if not os.path.isdir(path):
    raise ValueError(f'config.init_from={path} is not a directory')
  if not _is_workdir(path):
    if not os.path.exists(os.path.join(path, 'config.json')):
      raise ValueError(f'config.init_from={path} is neither a workdir (no '
                       'checkpoints/) nor a Hugging Face directory (no '
                       'config.json)')
    return
  saved = run_config.load_flat(path) or {}
  theirs = FAMILY.get(saved.get('task'))
  ours = FAMILY.get(task)
  if theirs and ours and theirs != ours:
    raise ValueError(
        f'config.init_from={path} holds a run of task {saved["task"]!r} '
        f'({theirs}), but this run trains task {task!r} ({ours}): weights '
        'move only within one family')


def _is_workdir(path: str) -> bool:
  # A workdir also holds a config.json (its run's): look for checkpoints/.
  return os.path.isdir(os.path.join(path, 'checkpoints'))


def load_workdir_params(workdir: str):
  """The parameters of the newest checkpoint in `workdir/checkpoints`."""
  return checkpointing.restore_params(workdir, name='config.init_from').params
