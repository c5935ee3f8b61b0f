"""Extractive question answering with BERT (SQuAD): start/end logits over
the tokens, the mean of the two cross entropies, best-span predictions."""
import jax
import jax.numpy as jnp
import numpy as np

from input_data import pipelines, squad_features, synthetic
from input_data.task_data import TaskData, reads_builtin_data
from tasks.base import BertTask, example_weights
from training import metrics, parallel


def best_span(start_logits, end_logits, max_answer_length: int):
  """[b, L] logits -> (start, end) [b] maximising start + end logits with
  start <= end < start + max_answer_length."""
  length = start_logits.shape[-1]
  idx = jnp.arange(length)
  valid = (idx[None, :] >= idx[:, None]) & (
      idx[None, :] < idx[:, None] + max_answer_length)  # [start, end]
  scores = start_logits[:, :, None] + end_logits[:, None, :]
  flat = jnp.argmax(jnp.where(valid[None], scores, -jnp.inf).reshape(
      scores.shape[0], -1), axis=-1)
  return (flat // length).astype(jnp.int32), (flat % length).astype(jnp.int32)


def _nll_sum(logits, positions, weights):
  """Weighted sum of -log p(position) under softmax over the tokens."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(log_probs, positions[:, None], -1)[:, 0]
  return (nll * weights).sum()


class ExtractiveQATask(BertTask):
  """Batches: input_ids, token_type_ids, attention_mask [b, L],
  start_positions, end_positions [b] (token indices of the answer; 0, the
  [CLS], for a window without the answer).
  """
  model_name = 'bert_qa'
  flops_family = 'bert_qa'
  predict_mode = 'answer'

  def make_data(self):
    cfg, length = self.model_config, self.config.data.max_length
    return TaskData(
        self.config, cfg,
        lambda rng, count: synthetic.qa_rows(rng, count, length,
                                             cfg.vocab_size),
        pipelines.qa_batches, ('question', 'context'))

  @classmethod
  def decoded_metric_names(cls, config):
    if reads_builtin_data(config):
      return ('span_exact_match',)
    return ('exact_match', 'f1')

  @property
  def max_answer_length(self) -> int:
    return self.config.data.max_answer_length

  # Loss --------------------------------------------------------------------
  def loss_sums(self, params, batch, rng, train: bool):
    out = self.forward(params, batch, rng, train)
    starts, ends = batch['start_positions'], batch['end_positions']
    weights = example_weights(batch, starts.shape)
    loss = 0.5 * (_nll_sum(out['start_logits'], starts, weights) +
                  _nll_sum(out['end_logits'], ends, weights))
    hits = ((jnp.argmax(out['start_logits'], -1) == starts) &
            (jnp.argmax(out['end_logits'], -1) == ends))
    return dict(loss=loss, weight=weights.sum(), correct=(hits * weights).sum())

  # Prediction --------------------------------------------------------------
  def predict(self, params, batch):
    """Best spans and the logits (for SQuAD answers across windows)."""
    out = self.forward(params, batch)
    start, end = best_span(out['start_logits'], out['end_logits'],
                           self.max_answer_length)
    return dict(start=start, end=end, start_logits=out['start_logits'],
                end_logits=out['end_logits'])

  def score(self, predictions, batches):
    """Synthetic: span exact match. Files: SQuAD exact match and F1 (%) of
    the answer text, over all windows of each question."""
    if self.builtin_data:
      hits = count = 0.0
      for pred, batch in zip(predictions, batches):
        w = np.asarray(batch['example_weight'])
        same = ((np.asarray(pred['start']) == batch['start_positions']) &
                (np.asarray(pred['end']) == batch['end_positions']))
        hits += float((same * w).sum())
        count += float(w.sum())
      return {'span_exact_match': (hits, count)}
    return self._squad_scores(predictions, batches)

  def _squad_scores(self, predictions, batches):
    """The windows of a question may be on any host: gather every window's
    logits, then take each question's best span across its windows."""
    features = self.data.eval_pipeline.features
    examples = self.data.eval_pipeline.examples
    rows = []  # (feature index, start logits, end logits) of this host
    for pred, batch in zip(predictions, batches):
      for i, f in enumerate(np.asarray(batch['example_index'])):
        if f >= 0:
          rows.append([int(f), np.asarray(pred['start_logits'][i]).tolist(),
                       np.asarray(pred['end_logits'][i]).tolist()])
    start = np.full(features.input_ids.shape, -1e9, np.float32)
    end = np.full(features.input_ids.shape, -1e9, np.float32)
    for f, s, e in parallel.allgather_objects(rows):
      start[f], end[f] = s, e
    answers = squad_features.best_spans(
        examples, features, start, end,
        max_answer_length=self.max_answer_length)
    sums = metrics.squad_sums(answers, examples)
    if jax.process_index() != 0:  # every host holds all: train.py sums
      sums[:] = 0
    return {'exact_match': (100 * sums[0], sums[2]),
            'f1': (100 * sums[1], sums[2])}
