"""Causal language modelling: the decoder-only LM, next-token loss, and
greedy continuations of eval rows (scored against the data)."""
import jax
import jax.numpy as jnp
import numpy as np

from infra import generation, input_pipeline, losses
from infra.tasks import synthetic, text_data
from models.config import model_config_from
from models.decoder_lm import DecoderLM, output_table


class CausalLMTask:
  """See infra/tasks/__init__.py for the interface.

  Batches: inputs, targets [b, L] (targets = next tokens), weights [b, L];
  packed rows add inputs_segmentation, inputs_position.
  """

  def __init__(self, config):
    self.config = config
    self.model_config = model_config_from(config.model)
    self.length = config.data.max_length
    self.data = text_data.TaskData(config, self.model_config, self._make,
                                   input_pipeline.lm_batches)

  @property
  def bos_id(self) -> int:
    """EOS starts documents, in the pipeline and the synthetic rows alike."""
    if self.data.synthetic:
      return synthetic.SEP
    return self.data.tokenizer().eos_id

  # Model -------------------------------------------------------------------
  def build_model(self, train: bool, decode: bool = False):
    return DecoderLM(self.model_config, deterministic=not train,
                     decode=decode)

  def init_variables(self, rng):
    return self.build_model(train=False).init(
        rng, jnp.ones((1, self.length), jnp.int32))

  # Loss --------------------------------------------------------------------
  def loss_sums(self, params, batch, rng, train: bool):
    extras = {}
    if 'inputs_segmentation' in batch:
      extras = dict(inputs_segmentation=batch['inputs_segmentation'],
                    inputs_positions=batch['inputs_position'])
    chunk_length = self.config.get('loss_chunk_length', 0)
    outputs = self.build_model(train).apply(
        {'params': params}, batch['inputs'], **extras,
        return_hidden=bool(chunk_length),
        rngs={'dropout': rng} if train else {})
    weights = batch['weights']
    if 'example_weight' in batch:
      weights = weights * batch['example_weight'][:, None]
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

  # Data --------------------------------------------------------------------
  def _make(self, rng, count):
    return synthetic.lm_rows(rng, count, self.length,
                             self.model_config.vocab_size)

  def train_batches(self, workdir, global_batch_size: int, host_rows: slice):
    return self.data.train_batches(workdir, global_batch_size, host_rows)

  def eval_batches(self, global_batch_size: int, host_rows: slice):
    return self.data.eval_batches(global_batch_size, host_rows)
