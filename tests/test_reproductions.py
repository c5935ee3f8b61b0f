"""The reproduction configs on shrunken settings, their loaders on the real
files, and the curve plots of experiments/."""
import os
import pathlib
import sys

import numpy as np
import pytest

import conftest
from configs import bert_finetune, multi30k_de_en, shakespeare_char
from input_data import pipelines, text_sources
from tasks import get_task
from training import loop

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'experiments'))
import plot_curves  # pylint: disable=g-import-not-at-top,wrong-import-position

DATA_DIR = os.environ['DATA_DIR']


def short(config, steps=2, batch=8):
  config.num_train_steps = steps
  config.log_every = config.eval_every = config.checkpoint_every = steps
  config.batch_size = config.eval_batch_size = batch
  config.num_devices = 1
  config.average_last_checkpoints = 0
  return config


def test_shakespeare_cpu_is_nanogpts_setting_and_trains(tmp_path):
  config = shakespeare_char.get_config('cpu')
  m = config.model
  assert (m.num_layers, m.num_heads, m.d_model, m.max_len) == (4, 4, 128, 64)
  assert (config.batch_size, config.num_train_steps) == (12, 2000)
  assert not m.use_bias and m.dropout_rate == 0.0
  assert config.optimizer.decay_only_matrices
  workdir = str(tmp_path / 'sh')
  result = loop.train_and_evaluate(short(config, steps=3), workdir)
  assert result.eval_metrics['eval/loss'] == pytest.approx(
      conftest.eval_loss_recomputed(config, workdir, result.state.params),
      rel=1e-5)
  with pytest.raises(ValueError, match="variant 'tpu'"):
    shakespeare_char.get_config('tpu')


def test_random_offset_rows_are_text_windows_and_resume():
  config = shakespeare_char.get_config('cpu')
  config.data.data_dir = DATA_DIR
  task = get_task(config)
  tokenizer = task.data.tokenizer('/tmp/unused_char_vocab_test')
  text = text_sources.load_split(config.data, 'train')[0]['text']
  it = iter(pipelines.lm_batches(config.data, tokenizer, 12, seed=0,
                                 split='train', training=True))
  first = next(it)
  state = it.get_state()
  after = next(it)
  for row, target in zip(first['inputs'], first['targets']):
    window = tokenizer.decode(row.tolist())
    assert window in text and len(window) == 64
    np.testing.assert_array_equal(row[1:], target[:-1])
  starts = {text.index(tokenizer.decode(r.tolist())) for r in first['inputs']}
  assert len(starts) == 12 and any(s % 64 for s in starts)  # not a grid
  resumed = iter(pipelines.lm_batches(config.data, tokenizer, 12, seed=0,
                                      split='train', training=True))
  resumed.set_state(state)
  np.testing.assert_array_equal(next(resumed)['inputs'], after['inputs'])


def test_sst2_from_minilm_uses_the_checkpoints_tokenizer_and_trains(
    tmp_path):
  config = bert_finetune.get_config('data=sst2,init=minilm')
  assert config.model.num_heads == 12 and config.model.d_model == 384
  assert os.path.exists(os.path.join(config.init_from, 'tokenizer.json'))
  config.data.data_dir = DATA_DIR
  config.data.max_length = 32
  batches = get_task(config).eval_batches(64)
  assert batches.num_batches == 14  # 872 dev sentences
  first = next(iter(batches))
  assert (first['input_ids'][:, 0] == 101).all()  # MiniLM's [CLS]
  result = loop.train_and_evaluate(short(config), str(tmp_path / 'sst2'))
  assert 0.3 < result.eval_metrics['eval/label_accuracy'] < 1.0


def test_squad_dev_split_is_by_article_and_trains(tmp_path):
  config = bert_finetune.get_config('task=qa,data=squad,init=minilm')
  config.data.data_dir = DATA_DIR
  train_set = text_sources.load_split(config.data, 'train')
  eval_set = text_sources.load_split(config.data, 'validation')
  assert (len(train_set), len(eval_set)) == (8582, 1988)
  assert not {e['title'] for e in train_set} & {e['title'] for e in eval_set}
  config.data.max_examples = 16
  config.data.max_length = 128
  config.data.doc_stride = 64
  result = loop.train_and_evaluate(short(config), str(tmp_path / 'squad'))
  assert {'eval/exact_match', 'eval/f1'} <= set(result.eval_metrics)


def test_multi30k_de_en_reverses_the_pair(tmp_path):
  config = multi30k_de_en.get_config('steps=100')
  assert config.data.inputs_pattern == '{split}.de.gz'
  config.data.data_dir = os.path.join(DATA_DIR, 'multi30k')
  config.data.max_examples = 64
  config.data.eval_split = 'val'
  config.model.update(num_layers=1, d_model=32, d_ff=64, vocab_size=300)
  config.tokenizer.vocab_size = 300
  config.decode.beam_size = 1
  config.decode.max_decode_len = 8
  result = loop.train_and_evaluate(short(config), str(tmp_path / 'de_en'))
  example = text_sources.load_split(config.data, 'train')[0]
  assert example['inputs'].startswith('Zwei junge')  # German source
  assert 'eval/bleu_lowercase_tokenized' in result.eval_metrics


def test_curves_are_drawn_from_a_recorded_metrics_file(tmp_path):
  records = plot_curves.read_records(
      str(REPO / 'experiments' / 'multi30k_cpu_metrics_7000.jsonl'))
  output = tmp_path / 'curves.png'
  drawn = plot_curves.plot(records, str(output), 'Multi30k')
  assert {'train/loss', 'eval/loss', 'eval/bleu'} <= set(drawn)
  assert output.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert output.stat().st_size > 10_000


def test_shakespeare_generation_starts_from_a_token_seen_at_row_starts(
    tmp_path):
  # Random-offset rows start at any character and never at EOS (which only
  # ends the stream), so generation starts from a newline, as nanoGPT's.
  config = shakespeare_char.get_config('cpu')
  config.data.data_dir = DATA_DIR
  task = get_task(config)
  tokenizer = task.data.tokenizer(str(tmp_path))
  assert task.bos_id == tokenizer.encode('\n')[0] != tokenizer.eos_id
  def bos_id():  # a new task, reading the chars.txt trained above
    task = get_task(config)
    task.data.tokenizer(str(tmp_path))
    return task.bos_id

  config.decode.start_text = ''
  assert bos_id() == tokenizer.eos_id
  config.decode.start_text = 'ROMEO'
  with pytest.raises(ValueError, match=r"start_text='ROMEO' is 5 tokens"):
    bos_id()
