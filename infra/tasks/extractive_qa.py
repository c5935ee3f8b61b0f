"""Extractive question answering with BERT (SQuAD): start/end logits over
the tokens, the mean of the two cross entropies, best-span predictions."""
import jax
import jax.numpy as jnp
import numpy as np

from infra import input_pipeline, metrics, squad_features
from infra.tasks import synthetic, text_data
from models.bert import BertForQuestionAnswering
from models.config import model_config_from

_INPUTS = ('input_ids', 'token_type_ids', 'attention_mask')


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


class ExtractiveQATask:
  """See infra/tasks/__init__.py for the interface.

  Batches: input_ids, token_type_ids, attention_mask [b, L],
  start_positions, end_positions [b] (token indices of the answer; 0, the
  [CLS], for a window without the answer).
  """

  def __init__(self, config):
    self.config = config
    self.model_config = model_config_from(config.model)
    self.length = config.data.max_length
    self.max_answer_length = config.data.get('max_answer_length', 30)
    self.data = text_data.TaskData(config, self.model_config, self._make,
                                   input_pipeline.qa_batches)
    self._eval = None

  # Model -------------------------------------------------------------------
  def build_model(self, train: bool, decode: bool = False):
    if decode:
      raise ValueError('BERT has no decoding mode')
    return BertForQuestionAnswering(self.model_config,
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
    out = self._logits(params, batch, rng, train)
    starts, ends = batch['start_positions'], batch['end_positions']
    weights = batch.get('example_weight', jnp.ones(starts.shape, jnp.float32))
    loss = 0.5 * (_nll_sum(out['start_logits'], starts, weights) +
                  _nll_sum(out['end_logits'], ends, weights))
    hits = ((jnp.argmax(out['start_logits'], -1) == starts) &
            (jnp.argmax(out['end_logits'], -1) == ends))
    return dict(loss=loss, weight=weights.sum(), correct=(hits * weights).sum())

  # Prediction --------------------------------------------------------------
  def predict(self, params, batch):
    """Best spans and the logits (for SQuAD answers across windows)."""
    out = self._logits(params, batch, None, False)
    start, end = best_span(out['start_logits'], out['end_logits'],
                           self.max_answer_length)
    return dict(start=start, end=end, start_logits=out['start_logits'],
                end_logits=out['end_logits'])

  def score(self, predictions, batches):
    """Synthetic: span exact match. Files: SQuAD exact match and F1 (%) of
    the answer text, over all windows of each question."""
    if self.config.data.source == 'synthetic':
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
    features = self._eval.features
    rows = []  # (feature index, start logits, end logits) of this host
    for pred, batch in zip(predictions, batches):
      for i, f in enumerate(np.asarray(batch['example_index'])):
        if f >= 0:
          rows.append([int(f), np.asarray(pred['start_logits'][i]).tolist(),
                       np.asarray(pred['end_logits'][i]).tolist()])
    rows = metrics.allgather_objects(rows)  # windows of a question may be
    start = np.full(features.input_ids.shape, -1e9, np.float32)  # anywhere
    end = np.full(features.input_ids.shape, -1e9, np.float32)
    for f, s, e in rows:
      start[f], end[f] = s, e
    answers = squad_features.best_spans(
        self._eval.examples, features, start, end,
        max_answer_length=self.max_answer_length)
    sums = np.zeros(3)
    for ex in self._eval.examples:
      refs = [a['text'] for a in ex['answers']]
      sums += [metrics.squad_exact_match(answers[ex['id']], refs),
               metrics.squad_f1(answers[ex['id']], refs), 1]
    if jax.process_index() != 0:  # train.py sums over hosts
      sums[:] = 0
    return {'exact_match': (100 * sums[0], sums[2]),
            'f1': (100 * sums[1], sums[2])}

  # Data --------------------------------------------------------------------
  def _make(self, rng, count):
    return synthetic.qa_rows(rng, count, self.length,
                             self.model_config.vocab_size)

  def train_batches(self, workdir, global_batch_size: int, host_rows: slice):
    return self.data.train_batches(workdir, global_batch_size, host_rows)

  def eval_batches(self, global_batch_size: int, host_rows: slice):
    self._eval = self.data.eval_batches(global_batch_size, host_rows)
    return self._eval
