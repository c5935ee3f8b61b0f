"""Sequence-to-sequence task (translation, summarization, synthetic tasks):
the encoder-decoder, label-smoothed loss and beam-search predictions.

`config.data.source`: 'synthetic' (infra/synthetic_data.py, scored by exact
match) or 'files' (infra/input_pipeline.seq2seq_batches on local files, one
joint tokenizer for both sides from `config.tokenizer`, scored by corpus
sacreBLEU on detokenized text and, for translation, by the lowercased
tokenized BLEU the Multi30k literature reports; ROUGE with
`config.data.rouge=True`, for summarization).
"""
import jax
import jax.numpy as jnp
import numpy as np

from infra import beam_search, input_pipeline, losses, metrics
from infra import synthetic_data, tokenizers, text_sources
from infra.eval_batching import fixed_size_batches
from models.config import model_config_from
from models.encoder_decoder import EncoderDecoder, output_table

# Packed batches (infra/packing.py) -> keyword arguments of EncoderDecoder.
_PACKING_INPUTS = {'inputs_position': 'inputs_positions',
                   'targets_position': 'targets_positions',
                   'inputs_segmentation': 'inputs_segmentation',
                   'targets_segmentation': 'targets_segmentation'}


class Seq2SeqTask:
  """See infra/tasks/__init__.py for the interface."""

  def __init__(self, config):
    self.config = config
    self.model_config = model_config_from(config.model)
    self.eos_id = 1
    self._tokenizer = None
    self._eval_examples = None
    if config.data.source not in ('synthetic', 'files'):
      raise ValueError(f'config.data.source={config.data.source!r} is not one '
                       'of synthetic, files')

  # Model -------------------------------------------------------------------
  def build_model(self, train: bool, decode: bool = False):
    return EncoderDecoder(self.model_config, deterministic=not train,
                          decode=decode)

  def example_shapes(self):
    """Shapes of one row: (source length, target length)."""
    data = self.config.data
    if data.source == 'synthetic':
      return data.max_len, data.max_len + 1
    return data.max_input_length, data.max_target_length

  def init_variables(self, rng):
    src_len, tgt_len = self.example_shapes()
    model = self.build_model(train=False)
    return model.init(rng, jnp.ones((1, src_len), jnp.int32),
                      jnp.ones((1, tgt_len), jnp.int32))

  # Loss --------------------------------------------------------------------
  def loss_sums(self, params, batch, rng, train: bool):
    model = self.build_model(train)
    extras = {arg: batch[key] for key, arg in _PACKING_INPUTS.items()
              if key in batch}
    chunk_length = self.config.get('loss_chunk_length', 0)
    outputs = model.apply({'params': params}, batch['inputs'],
                          batch['targets'], **extras,
                          return_hidden=bool(chunk_length),
                          rngs={'dropout': rng} if train else {})
    weights = (batch['targets'] > 0).astype(jnp.float32)
    if 'example_weight' in batch:
      weights = weights * batch['example_weight'][:, None]
    return losses.next_token_sums(
        outputs, output_table(params, self.model_config), batch['targets'],
        weights, self.config.label_smoothing if train else 0.0, chunk_length)

  # Prediction --------------------------------------------------------------
  def predict(self, params, batch):
    """Beam search (greedy if beam_size == 1): [b, max_decode_len] ids."""
    dcfg = self.config.decode
    inputs = batch['inputs']
    max_len = dcfg.max_decode_len or self.example_shapes()[1]
    model = self.build_model(train=False, decode=True)
    encoded = model.apply({'params': params}, inputs, method='encode')
    batch_size = inputs.shape[0]
    beams = max(dcfg.beam_size, 1)
    cache_shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), inputs,
                           jnp.zeros((batch_size, max_len), jnp.int32)))
    cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                         cache_shapes['cache'])
    encoded = beam_search.expand_to_beams(encoded, beams)
    beam_inputs = beam_search.expand_to_beams(inputs, beams)

    def tokens_to_logits(ids, cache):
      logits, variables = model.apply(
          {'params': params, 'cache': cache}, encoded, beam_inputs, ids,
          method='decode_logits', mutable=['cache'])
      return logits[:, -1], variables['cache']

    sequences, _ = beam_search.beam_search(
        tokens_to_logits, cache, batch_size=batch_size, beam_size=beams,
        max_decode_len=max_len, eos_id=self.eos_id, alpha=dcfg.alpha)
    return sequences[:, 0]

  # Data --------------------------------------------------------------------
  def tokenizer(self, workdir: str | None = None):
    """One tokenizer for source and target (trained on both sides of the
    training split into `workdir` the first time, reused on resume)."""
    if self._tokenizer is None:
      data = self.config.data
      in_key, tgt_key = data.get('inputs_key', 'inputs'), data.get(
          'targets_key', 'targets')

      def texts():
        for ex in text_sources.load_split(data, data.train_split):
          yield ex[in_key]
          yield ex[tgt_key]
      self._tokenizer = tokenizers.build_tokenizer(self.config.tokenizer,
                                                   workdir or '', texts)
      if self._tokenizer.eos_id != self.eos_id:
        raise ValueError(f'config.tokenizer: EOS must be id {self.eos_id} for '
                         f'the encoder-decoder, got {self._tokenizer.eos_id}')
      if self._tokenizer.vocab_size > self.model_config.vocab_size:
        raise ValueError(
            f'the tokenizer has {self._tokenizer.vocab_size} tokens but '
            f'config.model.vocab_size={self.model_config.vocab_size}')
    return self._tokenizer

  def train_batches(self, workdir, global_batch_size: int, host_rows: slice):
    data = self.config.data
    if data.source == 'synthetic':
      return synthetic_data.SyntheticBatches(
          data, self.model_config.vocab_size, self.config.seed,
          global_batch_size, host_rows)
    return iter(input_pipeline.seq2seq_batches(
        data, self.tokenizer(workdir), global_batch_size, self.config.seed,
        data.train_split, training=True))

  def eval_batches(self, global_batch_size: int, host_rows: slice):
    data = self.config.data
    if data.source == 'synthetic':
      inputs, targets = synthetic_data.eval_examples(
          data, self.model_config.vocab_size, self.config.seed)
      return fixed_size_batches({'inputs': inputs, 'targets': targets},
                                global_batch_size, host_rows)
    batches = input_pipeline.seq2seq_batches(
        data, self.tokenizer(), global_batch_size, self.config.seed,
        data.eval_split, training=False)
    self._eval_examples = batches.examples
    return list(batches)

  def score(self, predictions, batches):
    """Mergeable sums over this host's real examples (summed over hosts by
    train.py, then turned into metrics by `metrics_from_sums`)."""
    if self.config.data.source == 'synthetic':
      return self._exact_match(predictions, batches)
    hypotheses, references = self.decode_texts(predictions, batches)
    sums = {'bleu': metrics.bleu_stats(hypotheses, references),
            'bleu_lowercase_tokenized': metrics.bleu_stats(
                hypotheses, references, lowercase=True)}
    if self.config.data.get('rouge', False):
      sums['rouge'] = metrics.rouge_sums(hypotheses, references)
    return sums

  def decode_texts(self, predictions, batches):
    """Beam outputs -> (hypotheses, references) as detokenized text."""
    tgt_key = self.config.data.get('targets_key', 'targets')
    hypotheses, references = [], []
    for pred, batch in zip(predictions, batches):
      for row, index in zip(np.asarray(pred), batch['example_index']):
        if index >= 0:
          hypotheses.append(self.tokenizer().decode(row.tolist()))
          references.append(self._eval_examples[index][tgt_key])
    return hypotheses, references

  def metrics_from_sums(self, sums):
    if 'exact_match' in sums:
      total, count = sums['exact_match']
      return {'exact_match': float(total) / max(float(count), 1.0)}
    out = {'bleu': metrics.bleu_from_stats(sums['bleu'])[0],
           'bleu_lowercase_tokenized': metrics.bleu_from_stats(
               sums['bleu_lowercase_tokenized'], lowercase=True)[0]}
    if 'rouge' in sums:
      out.update(metrics.rouge_from_sums(sums['rouge']))
    return out

  def _exact_match(self, predictions, batches):
    """Exact-match sums over this host's real examples."""
    exact, count = 0.0, 0.0
    for pred, batch in zip(predictions, batches):
      targets = batch['targets']
      length = min(pred.shape[1], targets.shape[1])
      pred = np.where(_after_eos(pred, self.eos_id), 0, pred)
      match = (pred[:, :length] == targets[:, :length]).all(1)
      match &= (pred[:, length:] == 0).all(1) & (targets[:, length:] == 0).all(1)
      exact += float((match * batch['example_weight']).sum())
      count += float(batch['example_weight'].sum())
    return {'exact_match': (exact, count)}


def _after_eos(tokens, eos_id):
  """True strictly after the first EOS of each row."""
  is_eos = tokens == eos_id
  return np.cumsum(is_eos, axis=1) - is_eos > 0
