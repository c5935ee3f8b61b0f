"""The LM and BERT tasks on real files (tiny models, a few steps each)."""
import numpy as np
import pytest

import conftest
import train
from configs import bert_finetune, bert_pretraining, causal_lm


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
  result = train.train_and_evaluate(config, workdir)
  assert np.isfinite(result.train_metrics['train/loss'])
  # The reported eval loss is the trained parameters' loss on the files.
  assert result.eval_metrics['eval/loss'] == pytest.approx(
      conftest.eval_loss_recomputed(config, workdir, result.state.params),
      rel=1e-5)
