"""Readers on the real files and their one-line errors."""

import gzip
import os
import pathlib

import pytest

from input_data import text_sources
from input_data.text_sources import DataError
from configs.base_config import data_config

DATA_DIR = os.environ.get(
    'DATA_DIR', str(pathlib.Path(__file__).resolve().parents[1].parent /
                    'shared' / 'data'))
pytestmark = pytest.mark.skipif(not os.path.isdir(DATA_DIR),
                                reason=f'DATA_DIR {DATA_DIR} does not exist')


def cfg(**kw):
  return data_config(**dict(data_dir=DATA_DIR, **kw))


def test_parallel_multi30k():
  ex = text_sources.load_split(cfg(
      format='parallel', inputs_pattern='multi30k/{split}.en.gz',
      targets_pattern='multi30k/{split}.de.gz'), 'val')
  assert len(ex) == 1014
  assert ex[0]['inputs'].startswith('A group of men')
  assert ex[0]['targets'].startswith('Eine Gruppe von Männern')


def test_tsv_sst2_keeps_quotes(tmp_path):
  rows = text_sources.load_split(cfg(format='tsv',
                                     file_pattern='sst2/{split}.tsv'), 'dev')
  assert len(rows) == 872 and set(rows[0]) == {'sentence', 'label'}
  assert {r['label'] for r in rows} == {'0', '1'}
  assert rows[0]['sentence'].startswith("it 's a charming")
  # Without QUOTE_NONE, an unbalanced quote would swallow following rows.
  t = tmp_path / 'q.tsv'
  t.write_text('sentence\tlabel\nhe said " hi\t1\nbye\t0\n')
  assert [r['label'] for r in text_sources.read_table(str(t))] == ['1', '0']


def test_jsonl_squad_lines_and_text_fractions():
  xsum = text_sources.load_split(cfg(format='jsonl',
                                     file_pattern='xsum-sample/sample.jsonl'),
                                 'train')
  assert len(xsum) == 10 and set(xsum[0]) >= {'document', 'summary'}
  squad = text_sources.load_split(cfg(
      format='squad', file_pattern='squad-v1.1/{split}-v1.1.json.gz'), 'dev')
  assert len(squad) == 10570
  a = squad[0]['answers'][0]
  assert squad[0]['context'][a['answer_start']:].startswith(a['text'])
  wiki = text_sources.load_split(cfg(
      format='lines', file_pattern='wikitext-2/{split}.txt.gz',
      max_examples=50), 'valid')
  assert len(wiki) == 50 and all(e['text'].strip() for e in wiki)
  shakespeare = cfg(format='text', file_pattern='tinyshakespeare/input.txt',
                    split_fractions={'train': (0.0, 0.9),
                                     'validation': (0.9, 1.0)})
  train = text_sources.load_split(shakespeare, 'train')[0]['text']
  val = text_sources.load_split(shakespeare, 'validation')[0]['text']
  assert len(train) + len(val) == 1115394 and train.startswith('First Citizen')


def test_wikitext_documents():
  lines = text_sources.read_lines(
      os.path.join(DATA_DIR, 'wikitext-2', 'valid.txt.gz'))
  docs = text_sources.split_documents(lines, 'wikitext_heading')
  titles = [l for l in lines if l.startswith(' = ') and not
            l.startswith(' = = ')]
  assert len(docs) == len(titles) > 50
  assert not any(l.startswith('=') for d in docs for l in d)
  blank = text_sources.split_documents(['a', 'b', '', '', 'c', ''], 'blank_line')
  assert blank == [['a', 'b'], ['c']]


def test_errors_name_the_culprit(tmp_path):
  a, b = tmp_path / 'a.txt', tmp_path / 'b.txt.gz'
  a.write_text('one\ntwo\nthree\n')
  with gzip.open(b, 'wt') as f:
    f.write('eins\nzwei\n')
  with pytest.raises(DataError, match=rf'{a} has 3 lines, {b} has 2'):
    text_sources.read_parallel(str(a), str(b))
  empty = tmp_path / 'empty.txt'
  empty.write_text('')
  with pytest.raises(DataError, match=rf'{empty}: file is empty'):
    text_sources.read_lines(str(empty))
  bad = tmp_path / 'bad.txt'
  bad.write_bytes(b'ok\nfine\nn\xc3\xa4\n\xff\xfe here\n')
  with pytest.raises(DataError, match=rf'{bad}: invalid UTF-8 on line 4'):
    text_sources.read_lines(str(bad))
  with pytest.raises(DataError,
                     match='config.data.data_dir: directory /no/such'):
    text_sources.load_split(data_config(**dict(
        data_dir='/no/such', format='lines', file_pattern='x')), 'train')
  with pytest.raises(DataError, match='missing.txt: file does not exist'):
    text_sources.read_lines(str(tmp_path / 'missing.txt'))
  tsv = tmp_path / 't.tsv'
  tsv.write_text('a\tb\n1\t2\n3\n')
  with pytest.raises(DataError, match='line 3 has a wrong number'):
    text_sources.read_table(str(tsv))


def test_label_budgets_are_nested_seeded_and_never_meet_the_heldout_slice(
    tmp_path):
  (tmp_path / 'train.tsv').write_text(
      'sentence\tlabel\n' + ''.join(f'row {i}\t{i % 2}\n' for i in range(500)))
  (tmp_path / 'dev.tsv').write_text('sentence\tlabel\ndev 7\t1\n')
  def rows(split, **kw):
    config = data_config(data_dir=str(tmp_path), format='tsv',
                         file_pattern='{split}.tsv', text_key='sentence', **kw)
    return [int(r['sentence'].split()[1])
            for r in text_sources.load_split(config, split)]
  heldout = rows('heldout', heldout_examples=100)
  small = rows('train', heldout_examples=100, train_examples=50)
  large = rows('train', heldout_examples=100, train_examples=200)
  rest = rows('train', heldout_examples=100)
  assert (len(heldout), len(small), len(large), len(rest)) == (
      100, 50, 200, 400)
  assert all(r == sorted(r) for r in (heldout, small, large, rest))
  assert set(small) < set(large) < set(rest)
  assert set(heldout).isdisjoint(rest)
  assert set(heldout) | set(rest) == set(range(500))
  assert rows('train', heldout_examples=100, train_examples=50) == small
  other = rows('train', heldout_examples=100, train_examples=50,
               subsample_seed=1)
  assert other != small and len(other) == 50
  assert rows('dev', heldout_examples=100, train_examples=50) == [7]
  assert len(rows('train')) == 500  # no cut asked: the whole file


def test_sst2_label_budgets_of_the_pretraining_record():
  """SST-2 train as configs/bert_finetune.py:labels=... cuts it."""
  from configs import bert_finetune  # pylint: disable=g-import-not-at-top
  config = bert_finetune.get_config('size=mini,data=sst2,labels=1000')
  config.data.data_dir = DATA_DIR
  budget = text_sources.load_split(config.data, 'train')
  heldout = text_sources.load_split(config.data, 'heldout')
  assert (len(budget), len(heldout)) == (1000, 2000)
  assert {r['label'] for r in budget} == {r['label'] for r in heldout} == {
      '0', '1'}
  assert len(text_sources.load_split(config.data, 'dev')) == 872


def test_label_budget_errors_name_the_fields():
  base = dict(format='tsv', file_pattern='sst2/{split}.tsv')
  with pytest.raises(DataError, match=r"split 'heldout' is cut from the "
                     r'train split: set config.data.heldout_examples'):
    text_sources.load_split(cfg(**base), 'heldout')
  with pytest.raises(DataError, match=r'heldout_examples=67000 \+ '
                     r'train_examples=1000 leave no room in the 67349 '
                     r'examples of .*sst2/train.tsv'):
    text_sources.load_split(cfg(**base, heldout_examples=67000,
                                train_examples=1000), 'train')
