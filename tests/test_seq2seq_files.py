"""Translation and summarization on real files, end to end through train.py."""
import os

import jax
import numpy as np
import pytest
from rouge_score import rouge_scorer
import sacrebleu

from configs import multi30k_en_de, xsum_summarization
from tasks import get_task
from training import loop
from training.metrics_writer import read_metrics

DATA_DIR = os.environ['DATA_DIR']


def shrink(config, **data):
  config.model.num_layers = 1
  config.model.d_model = 32
  config.model.d_ff = 64
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_train_steps = 3
  config.log_every = 1
  config.eval_every = 3
  config.checkpoint_every = 3
  config.average_last_checkpoints = 0
  config.decode.beam_size = 2
  config.decode.max_decode_len = 12
  with config.data.ignore_type():
    for key, value in data.items():
      config.data[key] = value
  return config


def decoded_texts(config, workdir, params):
  """(hypotheses, references) of the eval split, decoded here on one device
  with the trained parameters, independently of training/evaluator.py."""
  task = get_task(config)
  task.tokenizer(workdir)
  batches = task.eval_batches(config.eval_batch_size)
  predict = jax.jit(task.predict)
  outputs = [np.asarray(predict(params, b)) for b in batches]
  return task.decode_texts(outputs, batches)


def test_translation_reports_bleu_and_keeps_its_tokenizer(tmp_path):
  config = shrink(multi30k_en_de.get_config(),
                  data_dir=os.path.join(DATA_DIR, 'multi30k'),
                  max_examples=60, eval_split='val')  # 7 batches + 4
  config.tokenizer.vocab_size = 300
  config.model.vocab_size = 300
  workdir = str(tmp_path / 'm30k')
  result = loop.train_and_evaluate(config, workdir, stop_at_step=2)
  spm = os.path.join(workdir, 'spm.model')
  first_tokenizer = open(spm, 'rb').read()
  mtime = os.path.getmtime(spm)
  result = loop.train_and_evaluate(config, workdir)  # resumes
  assert os.path.getmtime(spm) == mtime
  assert open(spm, 'rb').read() == first_tokenizer
  hyps, refs = decoded_texts(config, workdir, result.state.params)
  assert len(hyps) == len(refs) == 60  # every example once (max_examples)
  assert result.eval_metrics['eval/bleu'] == pytest.approx(
      sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-6)
  assert result.eval_metrics['eval/bleu_lowercase_tokenized'] == (
      pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score,
                    abs=1e-6))
  assert [r['step'] for r in read_metrics(workdir) if 'train/loss' in r] == [
      1, 2, 3]


def test_summarization_reports_rouge(tmp_path):
  config = shrink(xsum_summarization.get_config(),
                  data_dir=os.path.join(DATA_DIR, 'xsum-sample'),
                  max_input_length=128, max_target_length=32)
  config.tokenizer.vocab_size = 400
  config.model.vocab_size = 400
  with config.data.ignore_type():
    config.data.train_split = config.data.eval_split = 'sample'
  config.data.file_pattern = '{split}.jsonl'
  workdir = str(tmp_path / 'xsum')
  result = loop.train_and_evaluate(config, workdir)
  hyps, refs = decoded_texts(config, workdir, result.state.params)
  scorer = rouge_scorer.RougeScorer(['rouge1', 'rouge2', 'rougeL'],
                                    use_stemmer=True)
  scores = [scorer.score(r, h) for h, r in zip(hyps, refs, strict=True)]
  for name in ('rouge1', 'rouge2', 'rougeL'):
    expected = np.mean([s[name].fmeasure for s in scores])
    assert result.eval_metrics[f'eval/{name}'] == pytest.approx(expected)


def test_missing_data_directory_names_the_config_key(tmp_path):
  config = shrink(multi30k_en_de.get_config(),
                  data_dir=str(tmp_path / 'nowhere'))
  with pytest.raises(ValueError, match='config.data.data_dir'):
    loop.train_and_evaluate(config, str(tmp_path / 'w'))


def test_packed_batch_has_the_loss_of_its_examples_unpacked():
  """Packing must change nothing but the layout: same loss sum and count."""
  import jax
  import numpy as np
  from tasks import get_task
  config = shrink(multi30k_en_de.get_config())
  config.model.vocab_size = 40
  task = get_task(config)
  params = task.init_variables(jax.random.key(0))['params']
  a_in, a_tgt, b_in, b_tgt = [5, 6, 7, 1], [8, 9, 1], [10, 11, 1], [12, 13, 14, 1]
  pad = lambda x, n: np.array([x + [0] * (n - len(x))], np.int32)
  packed = {
      'inputs': pad(a_in + b_in, 10), 'targets': pad(a_tgt + b_tgt, 10),
      'inputs_segmentation': pad([1] * 4 + [2] * 3, 10),
      'targets_segmentation': pad([1] * 3 + [2] * 4, 10),
      'inputs_position': pad([0, 1, 2, 3, 0, 1, 2], 10),
      'targets_position': pad([0, 1, 2, 0, 1, 2, 3], 10)}
  unpacked = {'inputs': np.concatenate([pad(a_in, 10), pad(b_in, 10)]),
              'targets': np.concatenate([pad(a_tgt, 10), pad(b_tgt, 10)])}
  got = task.loss_sums(params, packed, None, train=False)
  want = task.loss_sums(params, unpacked, None, train=False)
  assert float(got['weight']) == float(want['weight']) == 7.0
  np.testing.assert_allclose(got['loss'], want['loss'], rtol=1e-5)
