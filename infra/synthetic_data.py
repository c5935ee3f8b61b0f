"""A built-in sequence-to-sequence task, generated from a seed (no download).

Sources are variable-length token sequences (ids 2..vocab-1; 0 is padding,
1 is EOS); targets are the source reversed, sorted or copied, then EOS.
Batch `step` of a split is a pure function of (seed, split, step), so a
resumed run sees exactly the batches it would have seen, on any host count.
"""
import numpy as np

_SPLITS = {'train': 0, 'eval': 1}
_TRANSFORMS = {
    'reverse': lambda x: x[::-1],
    'sort': np.sort,
    'copy': lambda x: x,
}
EOS = 1


def make_examples(data_cfg, vocab_size: int, rng: np.random.Generator,
                  count: int):
  """-> (inputs [count, max_len], targets [count, max_len + 1]) int32."""
  if data_cfg.task not in _TRANSFORMS:
    raise ValueError(f'config.data.task={data_cfg.task!r} is not one of '
                     f'{", ".join(_TRANSFORMS)}')
  if not 1 <= data_cfg.min_len <= data_cfg.max_len:
    raise ValueError(f'config.data.min_len={data_cfg.min_len} must be in '
                     f'[1, config.data.max_len={data_cfg.max_len}]')
  transform = _TRANSFORMS[data_cfg.task]
  inputs = np.zeros((count, data_cfg.max_len), np.int32)
  targets = np.zeros((count, data_cfg.max_len + 1), np.int32)
  lengths = rng.integers(data_cfg.min_len, data_cfg.max_len + 1, count)
  for i, length in enumerate(lengths):
    tokens = rng.integers(2, vocab_size, length)
    inputs[i, :length] = tokens
    targets[i, :length] = transform(tokens)
    targets[i, length] = EOS
  return inputs, targets


class SyntheticBatches:
  """Infinite training batches; state is the step, saved with checkpoints."""

  def __init__(self, data_cfg, vocab_size: int, seed: int,
               global_batch_size: int, host_rows: slice):
    self.data_cfg, self.vocab_size, self.seed = data_cfg, vocab_size, seed
    self.global_batch_size, self.host_rows = global_batch_size, host_rows
    self.step = 0

  def __iter__(self):
    return self

  def __next__(self):
    rng = np.random.default_rng([self.seed, _SPLITS['train'], self.step])
    inputs, targets = make_examples(self.data_cfg, self.vocab_size, rng,
                                    self.global_batch_size)
    self.step += 1
    return {'inputs': inputs[self.host_rows], 'targets': targets[self.host_rows]}

  def get_state(self) -> dict:
    return {'step': self.step}

  def set_state(self, state: dict):
    self.step = int(state['step'])


def eval_examples(data_cfg, vocab_size: int, seed: int):
  """The held-out set: its own random stream, fixed by the seed."""
  rng = np.random.default_rng([seed, _SPLITS['eval']])
  return make_examples(data_cfg, vocab_size, rng, data_cfg.num_eval_examples)
