"""Fitting token sequences into fixed-length rows: limit, pad, pack, chunk.

Segment ids are 1.. per packed example and 0 on padding; positions restart at
0 in each segment. Keys follow the model convention `<feature>_segmentation`
and `<feature>_position`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import grain
import numpy as np
from grain.experimental import FirstFitPackIterDataset

from errors import UserError


def pad_to(x: np.ndarray, length: int, value: int = 0) -> np.ndarray:
  """[n] -> [length], padded at the end with `value` (n <= length)."""
  out = np.full((length,), value, dtype=np.asarray(x).dtype)
  out[:len(x)] = x
  return out


class LengthLimitIterDataset(grain.IterDataset):
  """Truncates or drops examples longer than `max_lengths` and counts them.

  Each example is a dict of 1-D arrays; `max_lengths` maps feature -> limit.
  With 'truncate', an overlong feature keeps its first `limit - 1` tokens and
  then its last token, so a sequence that ends with EOS still ends with EOS.
  The counters ('examples', 'truncated', 'dropped') are part of the iterator
  state, so they stay exact across a checkpoint restore.
  """

  def __init__(self, parent: grain.IterDataset, max_lengths: Mapping[str, int],
               overlong: str = 'truncate', keep_last_token: bool = True):
    super().__init__(parent)
    if overlong not in ('truncate', 'drop'):
      raise UserError(f'config.data.overlong: {overlong!r} is not '
                      "'truncate' or 'drop'")
    self.max_lengths = dict(max_lengths)
    self.overlong = overlong
    self.keep_last_token = keep_last_token
    self.last_iterator = None  # Lets the pipeline read the counters.

  def __iter__(self):
    self.last_iterator = _LengthLimitIterator(self._parent.__iter__(), self)
    return self.last_iterator


class _LengthLimitIterator(grain.DatasetIterator):
  """Iterator of `LengthLimitIterDataset`."""

  def __init__(self, parent, ds: LengthLimitIterDataset):
    super().__init__(parent)
    self._ds = ds
    self.counters = {'examples': 0, 'truncated': 0, 'dropped': 0}

  def __next__(self):
    while True:
      ex = next(self._parent)
      self.counters['examples'] += 1
      over = [k for k, n in self._ds.max_lengths.items() if len(ex[k]) > n]
      if not over:
        return ex
      kind = 'dropped' if self._ds.overlong == 'drop' else 'truncated'
      self.counters[kind] += 1
      if self.counters[kind] in (1, 10, 100) or self.counters[kind] % 1000 == 0:
        logging.info('input pipeline: %d of %d examples %s (longer than %s)',
                     self.counters[kind], self.counters['examples'], kind,
                     self._ds.max_lengths)
      if kind == 'dropped':
        continue
      ex = dict(ex)
      for k in over:
        n = self._ds.max_lengths[k]
        x = ex[k]
        ex[k] = (np.concatenate([x[:n - 1], x[-1:]]) if self._ds.keep_last_token
                 else x[:n])
      return ex

  def get_state(self):
    return {'parent': self._parent.get_state(), 'counters': dict(self.counters)}

  def set_state(self, state):
    self._parent.set_state(state['parent'])
    self.counters = dict(state['counters'])


def pack(ds: grain.IterDataset, lengths: Mapping[str, int],
         num_packing_bins: int, seed: int = 0) -> grain.IterDataset:
  """Packs examples (dicts of 1-D int arrays) into rows of `lengths`.

  Each output row has, per feature k: `k` [lengths[k]], `k_segmentation`
  and `k_position` [lengths[k]]. Features of one example go into the same
  row and segment (inputs and targets of a translation stay together).

  Why grain's first-fit packer over greedy (one open row): with N open bins an
  example goes into the first bin with room, so a long example that does not
  fit the current row no longer closes it; with Multi30k caption lengths in
  rows of 64, 32 bins fill 96% of the tokens against 90% for greedy
  (tests/test_packing.py checks it). Its checkpoint
  holds only the parent's position and replays from there, so the state
  stays a small JSON dict. N is the per-host batch size: all N bins are
  emitted together when an example fits none, i.e. one batch at a time.
  Examples must already fit (see `LengthLimitIterDataset`).
  """
  packed = FirstFitPackIterDataset(
      ds, length_struct=dict(lengths), num_packing_bins=num_packing_bins,
      seed=seed, shuffle_bins=True)

  def rename(row):
    out = {}
    for k in lengths:
      out[k] = row[k].astype(np.int32)
      out[k + '_segmentation'] = row[k + '_segment_ids'].astype(np.int32)
      out[k + '_position'] = row[k + '_positions'].astype(np.int32)
    return out

  return packed.map(rename)


def chunk_stream(tokens: np.ndarray, row_length: int, stride: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Cuts a 1-D token stream into rows that overlap by `row_length - stride`.

  For language modelling use row_length = L + 1 and stride = L: row i is
  stream[i*L : i*L + L + 1], so inputs = row[:-1] and targets = row[1:], and
  every token after the first is a target exactly once.

  Returns:
    rows [n, row_length] int32, PAD(0)-filled at the end of the last row;
    valid [n, row_length] bool, False on that filler.
  """
  tokens = np.asarray(tokens, dtype=np.int32)
  n = max(1, -(-(len(tokens) - (row_length - stride)) // stride))
  padded = np.zeros(((n - 1) * stride + row_length,), np.int32)
  padded[:len(tokens)] = tokens
  valid = np.zeros(padded.shape, bool)
  valid[:len(tokens)] = True
  idx = np.arange(n)[:, None] * stride + np.arange(row_length)[None, :]
  return padded[idx], valid[idx]
