"""Evaluation batches in which every example counts exactly once.

The last batch is filled with copies of padding rows and an
`example_weight` of 0, so shapes stay static (one compilation) and the
filler never reaches a metric.
"""
import numpy as np


def fixed_size_batches(arrays: dict, global_batch_size: int, host_rows: slice):
  """dict of [n, ...] arrays -> list of this host's batches of a global size.

  Each batch gets `example_weight` [rows] (1 real, 0 filler) and
  `example_index` [rows] (position in the data set, -1 for filler).
  """
  n = len(next(iter(arrays.values())))
  batches = []
  for start in range(0, n, global_batch_size):
    stop = min(start + global_batch_size, n)
    batch = {}
    for name, value in arrays.items():
      chunk = value[start:stop]
      filler = np.zeros((global_batch_size - len(chunk),) + value.shape[1:],
                        value.dtype)
      batch[name] = np.concatenate([chunk, filler])[host_rows]
    index = np.full(global_batch_size, -1, np.int64)
    index[:stop - start] = np.arange(start, stop)
    batch['example_index'] = index[host_rows]
    batch['example_weight'] = (index[host_rows] >= 0).astype(np.float32)
    batches.append(batch)
  return batches
