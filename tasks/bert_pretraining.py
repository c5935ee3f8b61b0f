"""BERT pre-training (Devlin et al. 2018): masked LM + next-sentence loss.

The loss is sum(MLM token losses) + sum_i(n_i * NSP loss of example i),
divided (by train.py, after summing over devices) by the number of masked
tokens sum_i n_i: the mean MLM loss plus a mean NSP loss whose examples are
weighted by their masked-token count n_i. As a sum over tokens it splits
exactly across devices and microbatches, and both losses count about
equally, as in the paper's (mean MLM + mean NSP). With config.data.nsp
False (RoBERTa's choice) rows hold one line and the loss is MLM alone.
"""
import jax.numpy as jnp
import numpy as np

from input_data import pipelines, synthetic
from input_data.task_data import TaskData
from tasks.base import BertTask, example_weights
from training import losses
from training.flops import StepShape


class BertPretrainingTask(BertTask):
  """Batches: input_ids, token_type_ids, attention_mask, mlm_targets [b, L]
  int32, mlm_weights [b, L] float32 (1 at masked positions), nsp_labels [b]
  (0 IsNext, 1 NotNext). With config.data.max_predictions the MLM head runs
  only at the first max_predictions masked positions of each row.
  """
  model_name = 'bert_pretraining'
  flops_family = 'bert_pretraining'  # training/flops.py: MLM + NSP heads
  predict_mode = None  # masked tokens are no text a user writes

  def make_data(self):
    cfg, length = self.model_config, self.config.data.max_length
    return TaskData(
        self.config, cfg,
        lambda rng, count: synthetic.bert_pretraining_rows(
            rng, count, length, cfg.vocab_size),
        pipelines.bert_pretraining_batches, (self.config.data.text_key,))

  @classmethod
  def step_shape(cls, config):
    """The MLM head runs at data.max_predictions rows (0: all of them)."""
    length = config.data.max_length
    return StepShape(seq_len=length, mlm_positions=min(
        config.data.max_predictions or length, length))

  @classmethod
  def loss_metric_names(cls, config):
    if not config.data.nsp:
      return ('mlm_loss',)
    return ('mlm_loss', 'nsp_loss', 'nsp_accuracy')

  @classmethod
  def decoded_metric_names(cls, config):
    return ('mlm_accuracy', 'nsp_accuracy') if config.data.nsp else (
        'mlm_accuracy',)

  def _forward(self, params, batch, rng, train):
    targets, weights = batch['mlm_targets'], batch['mlm_weights']
    weights = weights * example_weights(batch, weights.shape[:1])[:, None]
    positions = None
    max_predictions = self.config.data.max_predictions
    if max_predictions:  # masked positions first (stable), then padding
      positions = jnp.argsort(-weights, axis=-1, stable=True)[
          :, :max_predictions]
      targets = jnp.take_along_axis(targets, positions, axis=-1)
      weights = jnp.take_along_axis(weights, positions, axis=-1)
    out = self.forward(params, batch, rng, train, masked_positions=positions)
    return out, targets, weights

  # Loss --------------------------------------------------------------------
  def loss_sums(self, params, batch, rng, train: bool):
    out, targets, weights = self._forward(params, batch, rng, train)
    mlm = losses.cross_entropy_sums(out['mlm_logits'], targets, weights)
    masked_per_example = weights.sum(-1)
    nsp = losses.cross_entropy_sums(out['nsp_logits'], batch['nsp_labels'],
                                    masked_per_example)
    examples = example_weights(batch, masked_per_example.shape)
    nsp_hits = (jnp.argmax(out['nsp_logits'], -1) == batch['nsp_labels'])
    sums = dict(loss=mlm['loss'], weight=mlm['weight'],
                correct=mlm['correct'], mlm_loss=mlm['loss'])
    if not self.config.data.nsp:  # MLM only (RoBERTa): no NSP loss
      return sums
    return dict(sums, loss=mlm['loss'] + nsp['loss'], nsp_loss=nsp['loss'],
                nsp_correct=(nsp_hits * examples).sum(),
                nsp_examples=examples.sum())

  # Prediction --------------------------------------------------------------
  def predict(self, params, batch):
    """Masked-token and next-sentence predictions (argmax)."""
    out, _, _ = self._forward(params, batch, None, False)
    return dict(mlm=jnp.argmax(out['mlm_logits'], -1).astype(jnp.int32),
                nsp=jnp.argmax(out['nsp_logits'], -1).astype(jnp.int32))

  def score(self, predictions, batches):
    """MLM accuracy over masked tokens, NSP accuracy over examples."""
    mlm_hits = mlm_count = nsp_hits = nsp_count = 0.0
    max_predictions = self.config.data.max_predictions
    for pred, batch in zip(predictions, batches):
      example = np.asarray(batch['example_weight'])
      weights = np.asarray(batch['mlm_weights']) * example[:, None]
      targets = np.asarray(batch['mlm_targets'])
      if max_predictions:
        order = np.argsort(-weights, axis=-1, kind='stable')[:,
                                                              :max_predictions]
        weights = np.take_along_axis(weights, order, -1)
        targets = np.take_along_axis(targets, order, -1)
      mlm_hits += float(((np.asarray(pred['mlm']) == targets) * weights).sum())
      mlm_count += float(weights.sum())
      nsp_hits += float(((np.asarray(pred['nsp']) == np.asarray(
          batch['nsp_labels'])) * example).sum())
      nsp_count += float(example.sum())
    scores = {'mlm_accuracy': (mlm_hits, mlm_count)}
    if self.config.data.nsp:
      scores['nsp_accuracy'] = (nsp_hits, nsp_count)
    return scores
