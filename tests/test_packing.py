"""Packing, length limits and stream chunking."""

import collections
import os
import pathlib

import grain
import numpy as np
import pytest

from input_data import packing, text_sources

DATA_DIR = os.environ.get(
    'DATA_DIR', str(pathlib.Path(__file__).resolve().parents[1].parent /
                    'shared' / 'data'))


def examples(lengths, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for n in lengths:
    ids = rng.integers(3, 100, size=n).astype(np.int32)
    ids[-1] = 1  # EOS
    out.append({'inputs': ids, 'targets': ids[::-1].copy() + 1})
  return out


def packed_rows(exs, length, bins):
  ds = grain.MapDataset.source(exs).to_iter_dataset()
  return list(packing.pack(ds, {'inputs': length, 'targets': length}, bins))


def segments(row, key):
  seg = row[key + '_segmentation']
  return [row[key][seg == s] for s in range(1, seg.max() + 1)]


def test_pack_keeps_every_example_intact():
  exs = examples(np.random.default_rng(1).integers(1, 20, size=200))
  rows = packed_rows(exs, 24, bins=8)
  got_in = [tuple(s) for r in rows for s in segments(r, 'inputs')]
  got_tgt = [tuple(s) for r in rows for s in segments(r, 'targets')]
  assert collections.Counter(got_in) == collections.Counter(
      tuple(e['inputs']) for e in exs)
  # Inputs and targets of one example share a row and a segment id.
  pairs = collections.Counter(zip(got_in, got_tgt))
  assert pairs == collections.Counter(
      (tuple(e['inputs']), tuple(e['targets'])) for e in exs)
  for r in rows:
    seg, pos = r['inputs_segmentation'], r['inputs_position']
    assert r['inputs'].shape == (24,) and r['inputs'].dtype == np.int32
    assert (r['inputs'][seg == 0] == 0).all() and (pos[seg == 0] == 0).all()
    for s in range(1, seg.max() + 1):
      np.testing.assert_array_equal(pos[seg == s], np.arange((seg == s).sum()))
    # Segment ids are 1.. in order, padding only at the end.
    nz = seg[seg > 0]
    assert (np.diff(nz) >= 0).all() and (seg[len(nz):] == 0).all()


def fill_rate(rows):
  return np.mean([(r['inputs_segmentation'] > 0).mean() for r in rows])


def test_first_fit_fills_rows_better_than_greedy():
  # Real length distribution: Multi30k English captions (words + EOS).
  path = os.path.join(DATA_DIR, 'multi30k', 'train.en.gz')
  if not os.path.exists(path):
    pytest.skip(f'{path} not found')
  lengths = [len(l.split()) + 1 for l in text_sources.read_lines(path)[:3000]]
  exs = examples(lengths)
  greedy = fill_rate(packed_rows(exs, 64, bins=1))
  first_fit = fill_rate(packed_rows(exs, 64, bins=32))
  assert first_fit > 0.9 and first_fit > greedy + 0.04, (first_fit, greedy)


def test_length_limit_truncate_keeps_eos_and_drop_counts():
  exs = examples([3, 10, 5, 12])
  ds = grain.MapDataset.source(exs).to_iter_dataset()
  limit = packing.LengthLimitIterDataset(ds, {'inputs': 6}, 'truncate')
  out = list(limit)
  assert [len(e['inputs']) for e in out] == [3, 6, 5, 6]
  assert all(e['inputs'][-1] == 1 for e in out)
  np.testing.assert_array_equal(out[1]['inputs'][:5], exs[1]['inputs'][:5])
  assert limit.last_iterator.counters == {'examples': 4, 'truncated': 2,
                                          'dropped': 0}
  dropped = packing.LengthLimitIterDataset(ds, {'inputs': 6}, 'drop')
  assert [len(e['inputs']) for e in dropped] == [3, 5]
  assert dropped.last_iterator.counters['dropped'] == 2
  with pytest.raises(ValueError, match='config.data.overlong'):
    packing.LengthLimitIterDataset(ds, {'inputs': 6}, 'cut')


def test_chunk_stream():
  rows, valid = packing.chunk_stream(np.arange(1, 11), row_length=4, stride=3)
  np.testing.assert_array_equal(rows, [[1, 2, 3, 4], [4, 5, 6, 7],
                                       [7, 8, 9, 10]])
  assert valid.all()
  rows, valid = packing.chunk_stream(np.arange(1, 9), row_length=4, stride=3)
  np.testing.assert_array_equal(rows[-1], [7, 8, 0, 0])
  np.testing.assert_array_equal(valid[-1], [True, True, False, False])
  # Each token after the first is the target (row[1:]) exactly once.
  targets = rows[:, 1:][valid[:, 1:]]
  np.testing.assert_array_equal(targets, np.arange(2, 9))
