"""The files of a Hugging Face model directory: config.json and the tensors
(model.safetensors, pytorch_model.bin, or sharded versions with an
`*.index.json`), read for import and written for export. The tokenizer
files are written by input_data/tokenizers.save_for_transformers, beside
the tokenizers they describe.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np


def read_hf_config(path: str) -> dict:
  config_file = os.path.join(path, 'config.json')
  if not os.path.exists(config_file):
    raise FileNotFoundError(f'{path} has no config.json: not a Hugging Face '
                            'checkpoint directory')
  with open(config_file) as f:
    return json.load(f)


def _read_safetensors(filename: str) -> dict:
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  tensors = {}
  with safe_open(filename, framework='numpy') as f:
    keys = list(f.keys())
    for key in keys:
      try:
        tensors[key] = f.get_tensor(key)
      except TypeError:  # bfloat16: numpy has no such dtype
        break
  if len(tensors) < len(keys):
    with jax.default_device(jax.devices('cpu')[0]), \
        safe_open(filename, framework='flax') as f:
      for key in keys:
        if key not in tensors:
          tensors[key] = np.asarray(f.get_tensor(key).astype(jnp.float32))
  return tensors


def _read_torch(filename: str) -> dict:
  import torch  # pylint: disable=g-import-not-at-top  (only for .bin files)
  state = torch.load(filename, map_location='cpu', weights_only=True)
  return {k: v.float().numpy() if v.is_floating_point() else v.numpy()
          for k, v in state.items()}


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """All tensors of the checkpoint in `path`, by their Hugging Face names."""
  for name, reader in (('model.safetensors', _read_safetensors),
                       ('pytorch_model.bin', _read_torch)):
    if os.path.exists(os.path.join(path, name)):
      return reader(os.path.join(path, name))
    index = os.path.join(path, name + '.index.json')
    if os.path.exists(index):
      with open(index) as f:
        shards = sorted(set(json.load(f)['weight_map'].values()))
      tensors = {}
      for shard in shards:
        tensors.update(reader(os.path.join(path, shard)))
      return tensors
  raise FileNotFoundError(f'{path} has neither model.safetensors nor '
                          'pytorch_model.bin (nor a sharded index)')


def write_checkpoint(path: str, config: dict,
                     state: dict[str, np.ndarray]) -> list[str]:
  """Writes config.json and model.safetensors into `path`; the file names."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, 'config.json'), 'w', encoding='utf-8') as f:
    json.dump(config, f, indent=2, sort_keys=True)
    f.write('\n')
  save_file({k: np.ascontiguousarray(v) for k, v in state.items()},
            os.path.join(path, 'model.safetensors'), metadata={'format': 'pt'})
  return ['config.json', 'model.safetensors']
