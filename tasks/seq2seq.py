"""Sequence-to-sequence task (translation, summarization, synthetic tasks):
the encoder-decoder, label-smoothed loss and beam-search predictions.

`config.data.source`: 'synthetic' (input_data/synthetic.py, scored by exact
match) or 'files' (input_data/pipelines.seq2seq_batches on local files, one
joint tokenizer for both sides from `config.tokenizer`, scored by corpus
sacreBLEU on detokenized text and, for translation, by the lowercased
tokenized BLEU the Multi30k literature reports; ROUGE with
`config.data.rouge=True`, for summarization).
"""
import jax
import jax.numpy as jnp
import numpy as np

from decoding import beam_search
from errors import UserError
from input_data import pipelines, synthetic
from input_data.task_data import TaskData, reads_builtin_data
from models.encoder_decoder import output_table
from tasks.base import Task
from training import losses, metrics
from training.flops import StepShape

# Packed batches (input_data/packing.py) -> keyword arguments of EncoderDecoder.
_PACKING_INPUTS = {'inputs_position': 'inputs_positions',
                   'targets_position': 'targets_positions',
                   'inputs_segmentation': 'inputs_segmentation',
                   'targets_segmentation': 'targets_segmentation'}


class Seq2SeqTask(Task):
  """Batches: inputs [b, Ls], targets [b, Lt] int32 ending with EOS, then
  PAD; packed rows add the segmentation and position keys above."""
  model_name = 'encoder_decoder'
  checkpoint_family = 'encoder-decoder'
  flops_family = 'encoder_decoder'
  predict_mode = 'translate'
  eos_id = synthetic.EOS  # and the tokenizer's (checked in `tokenizer`)

  def make_data(self):
    data = self.config.data
    return TaskData(
        self.config, self.model_config,
        lambda rng, count: synthetic.seq2seq_rows(
            rng, count, data, self.model_config.vocab_size),
        pipelines.seq2seq_batches, (data.inputs_key, data.targets_key))

  @classmethod
  def decoded_metric_names(cls, config):
    if reads_builtin_data(config):
      return ('exact_match',)
    rouge = ('rouge1', 'rouge2', 'rougeL') if config.data.rouge else ()
    return ('bleu', 'bleu_lowercase_tokenized') + rouge

  @classmethod
  def step_shape(cls, config):
    data = config.data
    if reads_builtin_data(config):
      return StepShape(source_len=data.synthetic_max_len,
                       target_len=data.synthetic_max_len)
    return StepShape(source_len=data.max_input_length,
                     target_len=data.max_target_length)

  def export_token_ids(self, tokenizer):
    return dict(eos_token_id=tokenizer.eos_id)  # padding is 0 by design

  def target_length(self) -> int:
    data = self.config.data
    return (data.synthetic_max_len + 1 if self.builtin_data
            else data.max_target_length)

  def row_lengths(self):
    data, lengths = self.config.data, {}
    if self.builtin_data:  # targets: the reversed tokens and EOS
      lengths[f'config.data.synthetic_max_len={data.synthetic_max_len}'] = (
          data.synthetic_max_len + 1)
    else:
      lengths[f'config.data.max_input_length={data.max_input_length}'] = (
          data.max_input_length)
      lengths[f'config.data.max_target_length={data.max_target_length}'] = (
          data.max_target_length)
    decode_len = self.config.decode.max_decode_len
    if decode_len:
      lengths[f'config.decode.max_decode_len={decode_len}'] = decode_len
    return lengths

  # Loss --------------------------------------------------------------------
  def loss_sums(self, params, batch, rng, train: bool):
    extras = {arg: batch[key] for key, arg in _PACKING_INPUTS.items()
              if key in batch}
    chunk_length = self.config.loss_chunk_length
    outputs = self.apply(params, batch['inputs'], batch['targets'], **extras,
                         return_hidden=bool(chunk_length), rng=rng,
                         train=train)
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
    max_len = dcfg.max_decode_len or self.target_length()
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
        max_decode_len=max_len, eos_id=self.eos_id, alpha=dcfg.alpha,
        cache_batch_axis=1 if self.model_config.scan_layers else 0)
    return sequences[:, 0]

  # Data --------------------------------------------------------------------
  def tokenizer(self, workdir: str | None = None):
    """One tokenizer for source and target, trained on both sides of the
    training split into `workdir` the first time, reused on resume."""
    tokenizer = self.data.tokenizer(workdir)
    if tokenizer.eos_id != self.eos_id:
      raise UserError(f'config.tokenizer: EOS must be id {self.eos_id} for '
                      f'the encoder-decoder, got {tokenizer.eos_id}')
    return tokenizer

  def train_batches(self, workdir, global_batch_size: int):
    if not self.builtin_data:
      self.tokenizer(workdir)  # checked before the pipeline uses it
    return self.data.train_batches(workdir, global_batch_size)

  def score(self, predictions, batches):
    """Mergeable sums over this host's real examples (summed over hosts by
    train.py, then turned into metrics by `metrics_from_sums`)."""
    if self.builtin_data:
      return self._exact_match(predictions, batches)
    hypotheses, references = self.decode_texts(predictions, batches)
    sums = {'bleu': metrics.bleu_stats(hypotheses, references),
            'bleu_lowercase_tokenized': metrics.bleu_stats(
                hypotheses, references, lowercase=True)}
    if self.config.data.rouge:
      sums['rouge'] = metrics.rouge_sums(hypotheses, references)
    return sums

  def decode_texts(self, predictions, batches):
    """Beam outputs -> (hypotheses, references) as detokenized text."""
    tgt_key = self.config.data.targets_key
    examples = self.data.eval_pipeline.examples
    hypotheses, references = [], []
    for pred, batch in zip(predictions, batches):
      for row, index in zip(np.asarray(pred), batch['example_index']):
        if index >= 0:
          hypotheses.append(self.tokenizer().decode(row.tolist()))
          references.append(examples[index][tgt_key])
    return hypotheses, references

  def metrics_from_sums(self, sums):
    if 'exact_match' in sums:  # synthetic: a (total, count) pair
      return super().metrics_from_sums(sums)
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
