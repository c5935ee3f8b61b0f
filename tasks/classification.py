"""Sentence (pair) classification or regression with BERT (e.g. SST-2):
the pooled [CLS] head, cross entropy (squared error when num_labels=1)."""
import jax.numpy as jnp
import numpy as np

from input_data import pipelines, synthetic
from input_data.task_data import TaskData
from tasks.base import BertTask, example_weights
from training import losses


class ClassificationTask(BertTask):
  """Batches: input_ids, token_type_ids, attention_mask [b, L], labels [b]
  (int32 classes, float32 for regression).
  """
  model_name = 'bert_classifier'
  flops_family = 'bert_classifier'
  predict_mode = 'classify'

  @property
  def regression(self) -> bool:
    return not self.likelihood_loss(self.config)

  def make_data(self):
    cfg, length = self.model_config, self.config.data.max_length
    keys = tuple(filter(None, (self.config.data.text_key,
                               self.config.data.text_pair_key)))
    return TaskData(
        self.config, cfg,
        lambda rng, count: synthetic.classification_rows(
            rng, count, length, cfg.vocab_size, cfg.num_labels),
        pipelines.classification_batches, keys)

  @classmethod
  def likelihood_loss(cls, config) -> bool:
    return config.model.num_labels != 1  # one output: a regression

  @classmethod
  def decoded_metric_names(cls, config):
    return (('label_accuracy',) if cls.likelihood_loss(config) else
            ('squared_error',))

  # Loss --------------------------------------------------------------------
  def loss_sums(self, params, batch, rng, train: bool):
    logits = self.forward(params, batch, rng, train)
    labels = batch['labels']
    weights = example_weights(batch, labels.shape)
    if self.regression:
      error = (logits[:, 0] - labels.astype(jnp.float32)) ** 2
      return dict(loss=(error * weights).sum(), weight=weights.sum())
    return losses.cross_entropy_sums(
        logits, labels, weights,
        self.config.label_smoothing if train else 0.0)

  # Prediction --------------------------------------------------------------
  def predict(self, params, batch):
    """[b] predicted classes (int32) or values (float32, regression)."""
    logits = self.forward(params, batch)
    if self.regression:
      return logits[:, 0]
    return jnp.argmax(logits, -1).astype(jnp.int32)

  def score(self, predictions, batches):
    """Accuracy; regression: squared error (a mean after merging)."""
    total = count = 0.0
    for pred, batch in zip(predictions, batches):
      weights = np.asarray(batch['example_weight'])
      pred, labels = np.asarray(pred), np.asarray(batch['labels'])
      per_example = ((pred - labels) ** 2 if self.regression else
                     (pred == labels).astype(np.float64))
      total += float((per_example * weights).sum())
      count += float(weights.sum())
    return {('squared_error' if self.regression else 'label_accuracy'):
            (total, count)}
