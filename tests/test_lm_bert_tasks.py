"""Causal-LM and BERT tasks in the train loop; fine-tuning from pre-training."""
import jax
import numpy as np
import pytest

import conftest
from configs import bert_finetune, bert_pretraining, causal_lm
from input_data import synthetic
from tasks import eval_metric_names, get_task
from training import loop, optimizers, parallel, run_config


def shrink(config, steps=3):
  config.model.d_model = 32
  config.model.num_heads = 4
  config.model.d_ff = 64
  config.batch_size = 16
  config.eval_batch_size = 16
  config.data.num_eval_examples = 16
  config.num_train_steps = steps
  config.log_every = 1
  config.eval_every = steps
  config.checkpoint_every = steps
  config.optimizer.warmup_steps = 1
  return config


def flat(tree):
  return {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.fixture(scope='module')
def pretrained_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('bert_pt'))
  result = loop.train_and_evaluate(shrink(bert_pretraining.get_config()),
                                    workdir)
  metrics = result.eval_metrics
  assert set(metrics) == set(eval_metric_names(bert_pretraining.get_config()))
  assert metrics['eval/loss'] == pytest.approx(conftest.eval_loss_recomputed(
      shrink(bert_pretraining.get_config()), workdir, result.state.params),
                                               rel=1e-5)
  assert 0 <= metrics['eval/mlm_accuracy'] <= 1
  assert 0 <= metrics['eval/nsp_accuracy'] <= 1
  return workdir, result.state.params


@pytest.mark.parametrize('task', ['classification', 'qa'])
def test_finetuning_restores_the_encoder_and_initialises_the_head(
    pretrained_workdir, task, capsys):
  workdir, pretrained = pretrained_workdir
  config = shrink(bert_finetune.get_config(f'task={task}'))
  config.init_from = workdir
  fine_task = get_task(config)
  optimizer, _ = optimizers.make_optimizer(config.optimizer,
                                           config.num_train_steps)
  state = loop.initial_state(fine_task, optimizer, config,
                              parallel.for_config(config, fine_task))
  restored, source = flat(state.params['bert']), flat(pretrained['bert'])
  # QA has no pooler (as Hugging Face's); the rest of the encoder is there.
  unused = {"['pooler']['kernel']", "['pooler']['bias']"} if task == 'qa' \
      else set()
  assert restored.keys() == source.keys() - unused
  for key in restored:
    np.testing.assert_array_equal(restored[key], source[key])
  head = 'classifier' if task == 'classification' else 'qa_outputs'
  # The run prints both lists: the restored count, the fresh head, and the
  # checkpoint's leftovers (the MLM/NSP heads; for QA the pooler too).
  printed = capsys.readouterr().out
  assert (f'restored {len(restored)} parameter arrays from {workdir}; '
          f'freshly initialised: (2) {head}/bias, {head}/kernel;') in printed
  assert ('bert/pooler/kernel' in printed.split('unused from the checkpoint')[1]
          ) == (task == 'qa')
  assert set(state.params) == {'bert', head}
  fresh = jax.jit(fine_task.init_variables)(
      jax.random.key(config.seed))['params']  # as loop.initial_state
  np.testing.assert_array_equal(state.params[head]['kernel'],
                                fresh[head]['kernel'])
  if task == 'classification':  # ... and training runs from there.
    finetune_dir = str(workdir) + '_finetune'
    result = loop.train_and_evaluate(config, finetune_dir)
    assert set(result.eval_metrics) == set(eval_metric_names(config))
    assert result.eval_metrics['eval/loss'] == pytest.approx(
        conftest.eval_loss_recomputed(config, finetune_dir,
                                      result.state.params), rel=1e-5)
    assert 0 <= result.eval_metrics['eval/label_accuracy'] <= 1


def test_causal_lm_learns_the_synthetic_rows(tmp_path):
  config = shrink(causal_lm.get_config(), steps=200)
  config.model.d_model = 64
  config.batch_size = 32
  config.optimizer.learning_rate = 3e-3
  config.log_every = 50
  config.decode.beam_size = 1  # greedy continuations, scored
  result = loop.train_and_evaluate(config, str(tmp_path))
  # Chance is 1/64; the first two tokens of a row are unpredictable.
  assert result.eval_metrics['eval/accuracy'] > 0.85
  assert result.eval_metrics['eval/continuation_accuracy'] > 0.85


def test_pretraining_loss_weights_nsp_by_masked_tokens():
  config = shrink(bert_pretraining.get_config())
  task = get_task(config)
  params = jax.jit(task.init_variables)(jax.random.key(0))['params']
  batch = next(iter(task.eval_batches(8)))
  sums = jax.jit(lambda p, b: task.loss_sums(p, b, None, train=False))(
      params, batch)
  np.testing.assert_allclose(sums['loss'], sums['mlm_loss'] +
                             sums['nsp_loss'], rtol=1e-6)
  # Each example's NSP loss counts once per masked token it has.
  out = jax.jit(task.build_model(False).apply)(
      {'params': params}, batch['input_ids'], batch['token_type_ids'],
      batch['attention_mask'])
  log_p = jax.nn.log_softmax(out['nsp_logits'])
  per_example = -np.take_along_axis(np.asarray(log_p),
                                    batch['nsp_labels'][:, None], 1)[:, 0]
  masked = batch['mlm_weights'].sum(1) * batch['example_weight']
  np.testing.assert_allclose(sums['nsp_loss'], (per_example * masked).sum(),
                             rtol=1e-5)
  assert sums['weight'] == masked.sum()


def test_synthetic_rows_are_well_formed():
  rng = np.random.default_rng(0)
  pt = synthetic.bert_pretraining_rows(rng, 8, 32, 64)
  assert (pt['input_ids'][:, 0] == synthetic.CLS).all()
  assert ((pt['mlm_weights'] > 0) <= (pt['attention_mask'] > 0)).all()
  assert set(np.unique(pt['nsp_labels'])) <= {0, 1}
  qa = synthetic.qa_rows(rng, 8, 32, 64)
  rows = np.arange(8)
  # The answer is where the question token occurs in the context.
  np.testing.assert_array_equal(
      qa['input_ids'][rows, qa['start_positions']], qa['input_ids'][:, 1])
  np.testing.assert_array_equal(qa['end_positions'], qa['start_positions'])
  cls = synthetic.classification_rows(rng, 8, 32, 64, num_labels=3)
  steps = cls['input_ids'][:, 2] - cls['input_ids'][:, 1]
  np.testing.assert_array_equal(steps % 60, cls['labels'] + 1)


def test_unknown_data_source_is_one_clear_error():
  config = causal_lm.get_config()
  config.data.source = 'web'
  with pytest.raises(ValueError, match="config.data.source='web'"):
    get_task(config)


def test_regression_finetuning_learns_the_step_and_scores_squared_error(
    tmp_path, capsys):
  """num_labels=1: one output, squared-error loss, and eval/squared_error
  the mean of (prediction - label)^2, here recomputed from predictions.
  The synthetic label is the step of a progression (1 or 2): from the
  untrained head's error the model gets well below it."""
  config = shrink(bert_finetune.get_config(), steps=60)
  config.model.num_labels = 1
  config.optimizer.learning_rate = 3e-3
  task = get_task(config)
  assert task.regression
  batches = task.eval_batches(16)
  labels = np.concatenate([b['labels'] for b in batches])
  assert labels.dtype == np.float32 and set(labels) == {1.0, 2.0}

  def squared_error(params):
    predict = jax.jit(task.predict)
    total = count = 0.0
    for batch in batches:
      weight = np.asarray(batch['example_weight'])
      error = (np.asarray(predict(params, batch)) - batch['labels']) ** 2
      total += float((error * weight).sum())
      count += float(weight.sum())
    return total / count

  untrained = squared_error(jax.jit(task.init_variables)(
      jax.random.key(config.seed))['params'])
  result = loop.train_and_evaluate(config, str(tmp_path))
  metrics = result.eval_metrics
  assert set(metrics) == set(eval_metric_names(config))
  assert metrics['eval/squared_error'] == pytest.approx(
      squared_error(result.state.params), rel=1e-5)
  assert metrics['eval/loss'] == pytest.approx(metrics['eval/squared_error'],
                                               rel=1e-5)
  assert metrics['eval/squared_error'] < 0.5 * untrained, (metrics, untrained)
  # A squared error has no token accuracy or perplexity: none is reported,
  # in the metrics or in the progress lines.
  assert set(metrics) == {'eval/loss', 'eval/squared_error'}
  steps = [l for l in capsys.readouterr().out.splitlines()
           if l.startswith('step ') and '| loss' in l]
  assert steps and not any('acc' in l for l in steps), steps


PAIR_WORDS = 'the cat dog sat on mat a red blue big'.split()


def test_sentence_pair_classification_reads_both_sentences(tmp_path):
  """text_pair_key: [CLS] first [SEP] second [SEP], token types 0 for the
  first part and 1 for the second, as BERT's (GLUE MRPC, QNLI, ...)."""
  rng = np.random.default_rng(0)
  (tmp_path / 'vocab.txt').write_text('\n'.join(
      ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', *PAIR_WORDS]) + '\n')
  for split, count in (('train', 32), ('dev', 12)):
    rows = ['first\tsecond\tlabel']
    for _ in range(count):
      first = ' '.join(rng.choice(PAIR_WORDS, 3))
      same = bool(rng.integers(2))
      second = first if same else ' '.join(rng.choice(PAIR_WORDS, 4))
      rows.append(f'{first}\t{second}\t{int(same)}')
    (tmp_path / f'{split}.tsv').write_text('\n'.join(rows) + '\n')
  config = shrink(bert_finetune.get_config())
  config.model.update(vocab_size=16, num_labels=2)
  config.data.update(source='files', data_dir=str(tmp_path), format='tsv',
                     file_pattern='{split}.tsv', train_split='train',
                     eval_split='dev', text_key='first',
                     text_pair_key='second', label_key='label', max_length=16)
  config.tokenizer.update(kind='wordpiece', path=str(tmp_path / 'vocab.txt'),
                          lowercase=True)
  config.eval_batch_size = 8
  workdir = str(tmp_path / 'run')
  task = get_task(config)
  tokenizer = task.data.tokenizer(workdir)
  # The first dev example, wherever length bucketing put it (filler rows
  # have weight 0).
  batch, row = next((b, i) for b in task.eval_batches(8)
                    for i in range(8) if b['example_index'][i] == 0
                    and b['example_weight'][i] > 0)
  first, second, label = (tmp_path / 'dev.tsv').read_text().splitlines()[
      1].split('\t')
  a, b = tokenizer.encode(first), tokenizer.encode(second)
  ids = [2, *a, 3, *b, 3]  # [CLS] a [SEP] b [SEP]
  np.testing.assert_array_equal(batch['input_ids'][row],
                                ids + [0] * (16 - len(ids)))
  np.testing.assert_array_equal(
      batch['token_type_ids'][row],
      [0] * (len(a) + 2) + [1] * (len(b) + 1) + [0] * (16 - len(ids)))
  assert batch['labels'][row] == int(label)
  result = loop.train_and_evaluate(config, workdir)
  assert result.eval_metrics['eval/loss'] == pytest.approx(
      conftest.eval_loss_recomputed(config, workdir, result.state.params),
      rel=1e-5)


def _vocab(path, words):
  path.write_text('\n'.join(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]',
                             *words]) + '\n')
  return str(path)


def test_init_from_a_run_of_another_vocabulary_is_one_line(tmp_path):
  """A pre-training run whose text was read with other word pieces cannot
  seed fine-tuning: its embedding rows would mean other tokens."""
  words = ['the', 'quick', 'brown', 'fox', 'dog', '##s', '3', ',', ';']
  pre = tmp_path / 'pre'
  (pre / 'checkpoints').mkdir(parents=True)
  config = bert_finetune.get_config('data=sst2')
  config.data.source = 'files'
  config.tokenizer.path = _vocab(tmp_path / 'vocab.txt', words)
  run_config.save(config, str(pre))  # the pre-training run's tokenizer
  ours = tmp_path / 'w'
  config.init_from = str(pre)
  get_task(config).check_init_from(str(ours))  # the same vocabulary
  config.tokenizer.path = _vocab(tmp_path / 'other.txt', words[::-1])
  with pytest.raises(ValueError, match=(
      rf'config.init_from={pre} was trained with another tokenizer '
      rf'\(wordpiece {tmp_path}/vocab.txt of 14 tokens\) than '
      rf'config.tokenizer \(wordpiece {tmp_path}/other.txt of 14 tokens\)')):
    loop.train_and_evaluate(config, str(ours))
  assert not ours.exists()  # refused before anything was written
