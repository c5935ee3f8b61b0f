"""Causal language modelling: the decoder-only LM, next-token loss, and
greedy continuations of eval rows (scored against the data)."""
import jax
import numpy as np

from decoding import generation
from errors import UserError
from input_data import pipelines, synthetic
from input_data.task_data import TaskData
from models.decoder_lm import output_table
from tasks.base import Task, example_weights
from training import losses


class CausalLMTask(Task):
  """Batches: inputs, targets [b, L] (targets = next tokens), weights [b, L];
  packed rows add inputs_segmentation, inputs_position.
  """
  model_name = 'decoder_lm'
  checkpoint_family = 'decoder LM'
  flops_family = 'decoder_lm'
  predict_mode = 'generate'

  @property
  def length(self) -> int:
    return self.config.data.max_length

  def make_data(self):
    return TaskData(
        self.config, self.model_config,
        lambda rng, count: synthetic.lm_rows(
            rng, count, self.length, self.model_config.vocab_size),
        pipelines.lm_batches, (self.config.data.text_key,))

  @classmethod
  def decoded_metric_names(cls, config):
    return ('continuation_accuracy',)

  @property
  def bos_id(self) -> int:
    """The token generation starts from: config.decode.start_text's one
    token, else EOS, which starts documents in the pipeline (SEP in the
    synthetic rows)."""
    if self.builtin_data:
      return synthetic.SEP
    tokenizer = self.data.tokenizer()
    text = self.config.decode.start_text
    if not text:
      return tokenizer.eos_id
    ids = tokenizer.encode(text)
    if len(ids) != 1:
      raise UserError(f'config.decode.start_text={text!r} is {len(ids)} '
                      'tokens; it must be exactly one')
    return ids[0]

  def export_token_ids(self, tokenizer):
    return dict(bos_token_id=self.bos_id, eos_token_id=tokenizer.eos_id)

  # Loss --------------------------------------------------------------------
  def loss_sums(self, params, batch, rng, train: bool):
    extras = {}
    if 'inputs_segmentation' in batch:
      extras = dict(inputs_segmentation=batch['inputs_segmentation'],
                    inputs_positions=batch['inputs_position'])
    chunk_length = self.config.loss_chunk_length
    outputs = self.apply(params, batch['inputs'], **extras,
                         return_hidden=bool(chunk_length), rng=rng,
                         train=train)
    weights = batch['weights'] * example_weights(
        batch, batch['weights'].shape[:1])[:, None]
    return losses.next_token_sums(
        outputs, output_table(params, self.model_config), batch['targets'],
        weights, self.config.label_smoothing if train else 0.0, chunk_length)

  # Prediction --------------------------------------------------------------
  def predict(self, params, batch):
    """Greedy continuation of each row's first half: [b, L] token ids, the
    prompt included (row i holds inputs[i, :L//2] then generated tokens)."""
    prompt = batch['inputs'][:, :self.length // 2]
    out = generation.generate(
        self.model_config, params, prompt, jax.random.key(0),
        max_decode_len=self.length,
        temperature=0.0, stop_ids=(), bos_id=self.bos_id, pad_id=0)
    return out['tokens']

  def score(self, predictions, batches):
    """Continuation accuracy: generated tokens equal to the data's."""
    hits, count = 0.0, 0.0
    half = self.length // 2
    for pred, batch in zip(predictions, batches):
      weights = np.asarray(batch['weights'])[:, half:] * np.asarray(
          batch['example_weight'])[:, None]
      same = np.asarray(pred)[:, half:] == np.asarray(batch['inputs'])[:, half:]
      hits += float((same * weights).sum())
      count += float(weights.sum())
    return {'continuation_accuracy': (hits, count)}
