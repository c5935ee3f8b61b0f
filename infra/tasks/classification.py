"""Sentence (pair) classification or regression with BERT (e.g. SST-2):
the pooled [CLS] head, cross entropy (squared error when num_labels=1)."""
import jax.numpy as jnp
import numpy as np

from infra import input_pipeline, losses
from infra.tasks import synthetic, text_data
from models.bert import BertForSequenceClassification
from models.config import model_config_from

_INPUTS = ('input_ids', 'token_type_ids', 'attention_mask')


class ClassificationTask:
  """See infra/tasks/__init__.py for the interface.

  Batches: input_ids, token_type_ids, attention_mask [b, L], labels [b]
  (int32 classes, float32 for regression).
  """

  def __init__(self, config):
    self.config = config
    self.model_config = model_config_from(config.model)
    self.length = config.data.max_length
    self.regression = self.model_config.num_labels == 1
    self.data = text_data.TaskData(config, self.model_config, self._make,
                                   input_pipeline.classification_batches)

  # Model -------------------------------------------------------------------
  def build_model(self, train: bool, decode: bool = False):
    if decode:
      raise ValueError('BERT has no decoding mode')
    return BertForSequenceClassification(self.model_config,
                                         deterministic=not train)

  def init_variables(self, rng):
    ids = jnp.ones((1, self.length), jnp.int32)
    return self.build_model(train=False).init(rng, ids, ids, ids)

  def _logits(self, params, batch, rng, train):
    return self.build_model(train).apply(
        {'params': params}, *(batch[k] for k in _INPUTS),
        rngs={'dropout': rng} if train else {})

  # Loss --------------------------------------------------------------------
  def loss_sums(self, params, batch, rng, train: bool):
    logits = self._logits(params, batch, rng, train)
    labels = batch['labels']
    weights = batch.get('example_weight', jnp.ones(labels.shape, jnp.float32))
    if self.regression:
      error = (logits[:, 0] - labels.astype(jnp.float32)) ** 2
      return dict(loss=(error * weights).sum(), weight=weights.sum(),
                  correct=jnp.zeros((), jnp.float32))
    return losses.cross_entropy_sums(
        logits, labels, weights,
        self.config.label_smoothing if train else 0.0)

  # Prediction --------------------------------------------------------------
  def predict(self, params, batch):
    """[b] predicted classes (int32) or values (float32, regression)."""
    logits = self._logits(params, batch, None, False)
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

  # Data --------------------------------------------------------------------
  def _make(self, rng, count):
    return synthetic.classification_rows(
        rng, count, self.length, self.model_config.vocab_size,
        self.model_config.num_labels)

  def train_batches(self, workdir, global_batch_size: int, host_rows: slice):
    return self.data.train_batches(workdir, global_batch_size, host_rows)

  def eval_batches(self, global_batch_size: int, host_rows: slice):
    return self.data.eval_batches(global_batch_size, host_rows)
