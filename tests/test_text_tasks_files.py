"""The LM and BERT tasks on real files (tiny models, a few steps each)."""
import numpy as np
import pytest

import conftest
from configs import bert_finetune, bert_pretraining, causal_lm
from training import loop


def shrink(config, max_examples=None):
  config.num_train_steps = 2
  config.log_every = 1
  config.eval_every = 2
  config.checkpoint_every = 2
  config.batch_size = 8
  config.eval_batch_size = 8
  if max_examples:
    with config.data.ignore_type():
      config.data.max_examples = max_examples
  return config


@pytest.mark.parametrize('name, config', [
    ('shakespeare_lm', lambda: causal_lm.get_config('data=shakespeare')),
    ('sst2_classification', lambda: bert_finetune.get_config(
        'task=classification,size=tiny,data=sst2')),
    ('wikitext2_bert', lambda: bert_pretraining.get_config(
        'size=tiny,data=wikitext2')),
])
def test_task_trains_on_real_files(tmp_path, name, config):
  config = shrink(config(), max_examples=200)
  if name == 'shakespeare_lm':
    config.model.num_layers = 1
  workdir = str(tmp_path / name)
  result = loop.train_and_evaluate(config, workdir)
  assert np.isfinite(result.train_metrics['train/loss'])
  # The reported eval loss is the trained parameters' loss on the files.
  assert result.eval_metrics['eval/loss'] == pytest.approx(
      conftest.eval_loss_recomputed(config, workdir, result.state.params),
      rel=1e-5)


def _eval_batch(config, tmp_path):
  from tasks import get_task  # pylint: disable=g-import-not-at-top
  shrink(config, max_examples=64)
  task = get_task(config)
  task.data.tokenizer(str(tmp_path))
  return task.data.tokenizer(), next(iter(task.eval_batches(16)))


def test_pretraining_and_finetuning_share_one_special_token_layout(tmp_path):
  """MLM/NSP rows of WikiText-2 and SST-2 classification rows are laid out
  as BERT lays them out, with one tokenizer's ids: [CLS] first, each
  segment closed by [SEP], segment ids 0 then 1, padding after; MLM never
  masks a special token. A fine-tuned encoder then sees its pre-training's
  input format."""
  tok, pre = _eval_batch(
      bert_pretraining.get_config('size=tiny,data=wikitext2'), tmp_path)
  tok2, fine = _eval_batch(bert_finetune.get_config(
      'task=classification,size=tiny,data=sst2'), tmp_path)
  ids = (tok.cls_id, tok.sep_id, tok.pad_id, tok.mask_id)
  assert ids == (tok2.cls_id, tok2.sep_id, tok2.pad_id, tok2.mask_id)
  assert ids == (101, 102, 0, 103)  # MiniLM's (BERT-base uncased) vocab
  for batch, segments in ((pre, 2), (fine, 1)):
    for row, types, mask in zip(batch['input_ids'], batch['token_type_ids'],
                                batch['attention_mask']):
      length = int(mask.sum())
      assert mask[:length].all() and not mask[length:].any()
      assert row[0] == tok.cls_id and (row[length:] == tok.pad_id).all()
      seps = np.flatnonzero(row[:length] == tok.sep_id)
      assert len(seps) == segments and seps[-1] == length - 1, row
      want = np.zeros_like(types)
      if segments == 2:
        want[seps[0] + 1:length] = 1
      np.testing.assert_array_equal(types, want)
  # MLM targets only ordinary tokens: never [CLS], [SEP] or padding.
  targets = pre['mlm_targets'][pre['mlm_weights'] > 0]
  assert targets.size > 0
  assert not np.isin(targets, [tok.cls_id, tok.sep_id, tok.pad_id]).any()


@pytest.mark.parametrize('options', ['size=tiny,data=sst2_text',
                                     'size=tiny,data=wikitext2'])
def test_mlm_only_rows_hold_one_line_and_the_loss_no_nsp(tmp_path, options):
  """data.nsp=False (RoBERTa's choice; sst2_text's default): [CLS] line
  [SEP], segment ids 0, and a loss that is the MLM loss alone."""
  import jax  # pylint: disable=g-import-not-at-top
  from tasks import get_task  # pylint: disable=g-import-not-at-top
  config = shrink(bert_pretraining.get_config(options), max_examples=64)
  config.data.nsp = False
  if config.data.heldout_examples:  # 16 of the 64 rows read
    config.data.heldout_examples = 16
  tok, batch = _eval_batch(config, tmp_path)
  for row, types, mask in zip(batch['input_ids'], batch['token_type_ids'],
                              batch['attention_mask']):
    length = int(mask.sum())
    assert row[0] == tok.cls_id and row[length - 1] == tok.sep_id
    assert np.flatnonzero(row[:length] == tok.sep_id).tolist() == [length - 1]
    assert not types.any()
  assert batch['mlm_weights'].sum() > 0
  task = get_task(config)
  params = jax.jit(task.init_variables)(jax.random.key(0))['params']
  sums = task.loss_sums(params, batch, None, train=False)
  assert 'nsp_loss' not in sums and sums['loss'] == sums['mlm_loss']
  assert task.decoded_metric_names(config) == ('mlm_accuracy',)
