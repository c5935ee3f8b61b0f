"""Built-in data for every task family, generated from the seed (no download).

Seq2seq: sources are variable-length token sequences (ids 2..vocab-1; 0 is
padding, 1 is EOS); targets are the source reversed, sorted or copied, then
EOS (`config.data.synthetic_task`).

LM and BERT: every row is built from arithmetic progressions over the
ordinary tokens (x_t = x_0 + t * step, wrapping around), so each task is
learnable in a few hundred CPU steps and needs no download or tokenizer. Special ids follow
BERT's order: 0 [PAD], 1 [SEP] (also EOS), 2 [CLS], 3 [MASK]; ordinary
tokens are 4..vocab-1.

Batch `step` of a split is a pure function of (seed, task, split, step), so
a resumed run sees exactly the batches it would have seen, on any number
of hosts (each takes its rows of the global batch).
"""
import re
from typing import Callable

import numpy as np

from errors import UserError
from input_data import batching, mlm_masking

PAD, SEP, CLS, MASK = 0, 1, 2, 3
FIRST_TOKEN = 4
_SPLITS = {'train': 0, 'eval': 1}
EOS = SEP  # seq2seq targets end with id 1
_SEQ2SEQ_TRANSFORMS = {
    'reverse': lambda x: x[::-1],
    'sort': np.sort,
    'copy': lambda x: x,
}


def seq2seq_rows(rng, count: int, data_cfg, vocab_size: int) -> dict:
  """inputs [count, max_len], targets [count, max_len + 1] int32 (max_len:
  data_cfg.synthetic_max_len): the source transformed by
  `data_cfg.synthetic_task`, then EOS."""
  task = data_cfg.synthetic_task
  min_len, max_len = data_cfg.synthetic_min_len, data_cfg.synthetic_max_len
  if task not in _SEQ2SEQ_TRANSFORMS:
    raise UserError(f'config.data.synthetic_task={task!r} is not one of '
                    f'{", ".join(_SEQ2SEQ_TRANSFORMS)}')
  if not 1 <= min_len <= max_len:
    raise UserError(f'config.data.synthetic_min_len={min_len} must be in '
                    f'[1, config.data.synthetic_max_len={max_len}]')
  transform = _SEQ2SEQ_TRANSFORMS[task]
  inputs = np.zeros((count, max_len), np.int32)
  targets = np.zeros((count, max_len + 1), np.int32)
  lengths = rng.integers(min_len, max_len + 1, count)
  for i, length in enumerate(lengths):
    tokens = rng.integers(2, vocab_size, length)
    inputs[i, :length] = tokens
    targets[i, :length] = transform(tokens)
    targets[i, length] = EOS
  return {'inputs': inputs, 'targets': targets}


def progression(rng, length: int, vocab_size: int, start=None, step=None):
  """[length] ordinary tokens x_0 + t * step (mod the ordinary range)."""
  span = vocab_size - FIRST_TOKEN
  start = rng.integers(span) if start is None else start
  step = rng.integers(1, 4) if step is None else step
  return (FIRST_TOKEN + (start + step * np.arange(length)) % span).astype(
      np.int32)


def lm_rows(rng, count: int, length: int, vocab_size: int) -> dict:
  """Causal LM: inputs/targets [count, length] (next token), weights."""
  rows = np.stack([progression(rng, length + 1, vocab_size)
                   for _ in range(count)])
  return {'inputs': rows[:, :-1], 'targets': rows[:, 1:],
          'weights': np.ones((count, length), np.float32)}


def bert_pretraining_rows(rng, count: int, length: int,
                          vocab_size: int) -> dict:
  """[CLS] A [SEP] B [SEP] with 15% of tokens masked; B continues A's
  progression (IsNext, label 0) or is another progression (label 1)."""
  keys = ('input_ids', 'token_type_ids', 'attention_mask', 'mlm_targets',
          'mlm_weights', 'nsp_labels')
  out = {k: [] for k in keys}
  for _ in range(count):
    len_a = int(rng.integers(3, (length - 3) // 2 + 1))
    len_b = int(rng.integers(3, length - 3 - len_a + 1))
    a = progression(rng, len_a + len_b, vocab_size)
    label = int(rng.random() >= 0.5)
    b = progression(rng, len_b, vocab_size) if label else a[len_a:]
    ids, types = mlm_masking.build_pair(a[:len_a], b, length, CLS, SEP)
    pad = length - len(ids)
    ids, types = np.pad(ids, (0, pad)), np.pad(types, (0, pad))
    masked, targets, weights = mlm_masking.mask_tokens(
        ids, rng, vocab_size=vocab_size, mask_id=MASK,
        special_ids=(PAD, SEP, CLS, MASK))
    for k, v in zip(keys, (masked, types, (ids != PAD).astype(np.int32),
                           targets, weights, np.int32(label))):
      out[k].append(v)
  return {k: np.stack(v) for k, v in out.items()}


def classification_rows(rng, count: int, length: int, vocab_size: int,
                        num_labels: int) -> dict:
  """[CLS] progression [SEP] (random length); the label is its step - 1
  (regression, num_labels=1: the step as a float)."""
  steps = rng.integers(1, max(num_labels, 2) + 1, count)
  ids = np.zeros((count, length), np.int32)
  for i, step in enumerate(steps):
    n = int(rng.integers(3, length - 1))
    ids[i, :n + 2] = np.concatenate(
        [[CLS], progression(rng, n, vocab_size, step=step), [SEP]])
  labels = (steps.astype(np.float32) if num_labels == 1 else
            (steps - 1).astype(np.int32))
  return {'input_ids': ids, 'token_type_ids': np.zeros_like(ids),
          'attention_mask': (ids != PAD).astype(np.int32), 'labels': labels}


def qa_rows(rng, count: int, length: int, vocab_size: int) -> dict:
  """[CLS] q [SEP] context [SEP] over distinct context tokens: the answer is
  the one-token span where the question token q occurs in the context."""
  ids = np.zeros((count, length), np.int32)
  starts = np.zeros((count,), np.int32)
  for i in range(count):
    context = rng.permutation(np.arange(FIRST_TOKEN, vocab_size))[:length - 4]
    where = int(rng.integers(len(context) - 2))
    ids[i] = np.concatenate([[CLS, context[where], SEP], context, [SEP]])
    starts[i] = 3 + where
  return {'input_ids': ids, 'token_type_ids': (np.arange(length) >= 3)
          .astype(np.int32)[None].repeat(count, 0),
          'attention_mask': np.ones_like(ids), 'start_positions': starts,
          'end_positions': starts}


class IdTokenizer:
  """The built-in data's "text": token ids written as decimal numbers
  separated by spaces, so a trained workdir can be given inputs by hand
  ('5 9 7'). Special ids as above; EOS is SEP."""
  pad_id, eos_id, cls_id, sep_id, mask_id = PAD, EOS, CLS, SEP, MASK

  def __init__(self, vocab_size: int):
    self.vocab_size = vocab_size

  def encode(self, text: str) -> list[int]:
    return self.encode_with_offsets(text)[0]

  def encode_with_offsets(self, text: str):
    ids, offsets = [], []
    for match in re.finditer(r'\S+', text):
      token = match.group()
      if not token.isdigit() or int(token) >= self.vocab_size:
        raise UserError(f'{token!r} is not a token id in [0, '
                        f'{self.vocab_size}) (built-in data: ids as numbers)')
      ids.append(int(token))
      offsets.append(match.span())
    return ids, offsets

  def decode(self, ids) -> str:
    """Up to the first EOS, without padding."""
    out = []
    for i in map(int, ids):
      if i == self.eos_id:
        break
      if i != self.pad_id:
        out.append(str(i))
    return ' '.join(out)


class SyntheticStream:
  """Infinite training batches of `make(rng, count)`; state is the step."""

  def __init__(self, make: Callable, seed: int, global_batch_size: int):
    self.make, self.seed = make, seed
    self.global_batch_size = global_batch_size
    self.host_rows = batching.host_rows(global_batch_size)
    self.step = 0

  def __iter__(self):
    return self

  def __next__(self):
    rng = np.random.default_rng([self.seed, _SPLITS['train'], self.step])
    batch = self.make(rng, self.global_batch_size)
    self.step += 1
    return {k: v[self.host_rows] for k, v in batch.items()}

  def get_state(self) -> dict:
    return {'step': self.step}

  def set_state(self, state: dict):
    self.step = int(state['step'])


def eval_batches(make: Callable, seed: int, num_examples: int,
                 global_batch_size: int):
  """The held-out set (its own random stream), laid out as the file
  pipelines lay out evaluation sets (batching.eval_layout)."""
  rows = make(np.random.default_rng([seed, _SPLITS['eval']]), num_examples)
  features = [{k: v[i] for k, v in rows.items()} for i in range(num_examples)]
  return batching.eval_layout(
      None, features, {},
      batch_size=batching.host_batch_size(global_batch_size))
