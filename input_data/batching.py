"""The batching skeleton every grain pipeline shares, and the host split.

Training: the host's shard of the examples (every `process_count`-th one,
starting at `process_index`) -> shuffle from the seed (a new order each
epoch) -> repeat -> tokenize -> truncate/drop overlong (counted) -> pack or
pad -> batch of `global_batch // process_count` rows. The iterator state is
a small JSON dict (`get_state`/`set_state`), so a resumed run sees exactly
the batches the uninterrupted run would have seen.

Evaluation: every example exactly once. All hosts tokenize the whole split
(evaluation sets are small), lay it out in global batches and each takes its
rows; the last batch is filled with filler rows (`example_weight` 0.0,
`example_index` -1) so every host runs the same number of same-shape steps.
With `eval_length_buckets` examples are sorted by length and each batch is
padded to the smallest bucket that fits its global batch (few shapes to
compile, far less padding for decoding). Eval always truncates overlong
examples (dropping would skip examples) and counts them.

The per-task builders are in input_data/pipelines.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import grain
import jax
import numpy as np

from errors import UserError
from input_data import packing, text_sources


def host_rows(global_batch: int, process_index: int | None = None,
              process_count: int | None = None) -> slice:
  """This host's rows of a global batch: the same split everywhere (the
  device placement in training/parallel.py and every pipeline use it)."""
  index, count = this_host(process_index, process_count)
  if global_batch % count:
    raise UserError(f'global batch {global_batch} is not divisible by '
                     f'{count} processes')
  per_host = global_batch // count
  return slice(index * per_host, (index + 1) * per_host)


def host_batch_size(global_batch: int, process_count: int | None = None
                    ) -> int:
  """Rows each host feeds of a global batch."""
  rows = host_rows(global_batch, 0, process_count)
  return rows.stop - rows.start


class BatchIterator:
  """Yields batch dicts; `get_state()`/`set_state()` for checkpoints."""

  def __init__(self, dataset: grain.IterDataset,
               limit: packing.LengthLimitIterDataset | None):
    self._it = iter(dataset)
    self._limit_it = limit.last_iterator if limit is not None else None

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._it)

  def get_state(self) -> dict[str, Any]:
    return self._it.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    self._it.set_state(state)

  @property
  def counters(self) -> dict[str, int]:
    """Examples read, truncated and dropped so far (restored with state)."""
    return dict(self._limit_it.counters) if self._limit_it else {}


class Batches:
  """A re-iterable pipeline: each `iter()` starts a fresh `BatchIterator`.

  Eval pipelines also carry `num_batches`, `examples` (the raw example
  dicts, indexed by a batch's `example_index`) and `counters`.
  """

  def __init__(self, dataset, limit=None, *, examples=None, num_batches=None,
               counters=None):
    self.dataset, self._limit = dataset, limit
    self.examples, self.num_batches = examples, num_batches
    self.counters = counters or {}

  def __iter__(self) -> BatchIterator:
    return BatchIterator(self.dataset, self._limit)


def this_host(process_index=None, process_count=None):
  """(process_index, process_count), each from jax where not given."""
  return (jax.process_index() if process_index is None else process_index,
          jax.process_count() if process_count is None else process_count)


def pad(ex: dict, lengths: dict[str, int]) -> dict:
  """Pads the arrays of `ex` named in `lengths` to those lengths."""
  return {k: packing.pad_to(v, lengths[k]) if k in lengths else v
          for k, v in ex.items()}


def train_batches(source: Sequence, fn: Callable, cfg, *, seed, host, batch_size,
           lengths, use_random=False, pack=False, keep_last_token=True,
           finalize: Callable | None = None) -> Batches:
  """The training skeleton described in the module docstring."""
  index, count = host
  ds = grain.MapDataset.source(source)[index::count]
  if not len(ds):
    raise text_sources.DataError(
        f'host {index} of {count} has no examples: the split has '
        f'{len(source)} for {count} hosts')
  ds = ds.seed(seed).shuffle().repeat(cfg.num_epochs)
  ds = ds.random_map(fn) if use_random else ds.map(fn)
  it = ds.to_iter_dataset(grain.ReadOptions(
      num_threads=cfg.read_threads,
      prefetch_buffer_size=4 * batch_size))
  limit = None
  if lengths:
    it = limit = packing.LengthLimitIterDataset(
        it, lengths, cfg.overlong, keep_last_token)
  if pack:
    it = packing.pack(it, lengths, num_packing_bins=batch_size, seed=seed)
  else:
    it = it.map(lambda ex: pad(ex, lengths))
  it = it.batch(batch_size, drop_remainder=True)
  if finalize is not None:
    it = it.map(finalize)
  return Batches(it, limit)


def eval_layout(examples: Sequence[dict] | None, features: list[dict],
                lengths: dict[str, int], *, batch_size: int,
                buckets: Sequence[int] | None = None,
                length_key: str | None = None,
                finalize: Callable | None = None, host=None) -> Batches:
  """The evaluation layout described in the module docstring.

  `features[i]` is the unpadded dict of arrays for `examples[i]`;
  `batch_size` is this host's rows; `buckets` pads each batch's
  `length_key` to the smallest bucket that fits.
  """
  index, count = host or this_host()
  counters = {'examples': len(features), 'truncated': 0, 'dropped': 0}
  for f in features:
    counters['truncated'] += truncate(f, lengths)
  if counters['truncated']:
    logging.info('eval pipeline: %d of %d examples truncated to %s',
                 counters['truncated'], len(features), lengths)
  order = np.arange(len(features))
  if buckets:
    order = np.argsort([len(f[length_key]) for f in features], kind='stable')
  global_batch = batch_size * count
  num_batches = max(1, -(-len(features) // global_batch))
  slots = np.full((num_batches * global_batch,), -1, np.int64)
  slots[:len(order)] = order
  slots = slots.reshape(num_batches, global_batch)
  filler = {k: np.zeros((0,), np.int32) if k in lengths else np.zeros_like(v)
            for k, v in features[0].items()}

  def make_batch(b):
    rows = slots[b, index * batch_size:(index + 1) * batch_size]
    batch_lengths = dict(lengths)
    if buckets:  # Same bucket on every host: chosen from the global batch.
      longest = max((len(features[i][length_key]) for i in slots[b] if i >= 0),
                    default=1)
      fit = [x for x in sorted(buckets) if x >= longest]
      batch_lengths[length_key] = fit[0] if fit else lengths[length_key]
    exs = [pad(features[i] if i >= 0 else filler, batch_lengths)
           for i in rows]
    batch = {k: np.stack([e[k] for e in exs]) for k in exs[0]}
    batch['example_index'] = rows.astype(np.int32)
    batch['example_weight'] = (rows >= 0).astype(np.float32)
    return finalize(batch) if finalize else batch

  ds = grain.MapDataset.range(num_batches).map(make_batch)
  return Batches(ds, examples=examples, num_batches=num_batches,
                 counters=counters)


def truncate(feature: dict, lengths: dict[str, int]) -> bool:
  """Cuts `feature`'s arrays to `lengths`, keeping the last token
  (EOS/[SEP]) as training does; True if any was cut."""
  over = [k for k in lengths if len(feature[k]) > lengths[k]]
  for k in over:
    feature[k] = np.concatenate([feature[k][:lengths[k] - 1],
                                 feature[k][-1:]])
  return bool(over)
