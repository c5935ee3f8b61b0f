"""Causal language modelling: the decoder-only LM, next-token loss, and
greedy continuations of eval rows (scored against the data)."""
import jax
import jax.numpy as jnp
import numpy as np

from infra import generation, input_pipeline, losses
from infra.tasks import synthetic, text_data
from models.config import model_config_from
from models.decoder_lm import DecoderLM


class CausalLMTask:
  """See infra/tasks/__init__.py for the interface.

  Batches: inputs, targets [b, L] (targets = next tokens), weights [b, L];
  packed rows add inputs_segmentation, inputs_position.
  """

  def __init__(self, config):
    self.config = config
    self.model_config = model_config_from(config.model)
    text_data.check_source(config.data)
    self.length = config.data.max_length
    self._tokenizer = None
    self.bos_id = synthetic.SEP  # EOS starts documents, as in the pipeline

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
    logits = self.build_model(train).apply(
        {'params': params}, batch['inputs'], **extras,
        rngs={'dropout': rng} if train else {})
    weights = batch['weights']
    if 'example_weight' in batch:
      weights = weights * batch['example_weight'][:, None]
    return losses.cross_entropy_sums(
        logits, batch['targets'], weights,
        self.config.label_smoothing if train else 0.0)

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

  def _pipeline(self, global_batch_size, training, workdir=None):
    if self._tokenizer is None:
      self._tokenizer = text_data.build_tokenizer(self.config, workdir,
                                                  self.model_config)
      self.bos_id = self._tokenizer.eos_id
    return input_pipeline.lm_batches(
        self.config.data, self._tokenizer, global_batch_size,
        self.config.seed, text_data.split_name(self.config.data, training),
        training=training)

  def train_batches(self, workdir, global_batch_size: int, host_rows: slice):
    if self.config.data.source == 'synthetic':
      return synthetic.SyntheticStream(self._make, self.config.seed,
                                       global_batch_size, host_rows)
    return iter(self._pipeline(global_batch_size, True, workdir))

  def eval_batches(self, global_batch_size: int, host_rows: slice):
    if self.config.data.source == 'synthetic':
      return synthetic.eval_batches(self._make, self.config.seed,
                                    self.config.data.num_eval_examples,
                                    global_batch_size, host_rows)
    return self._pipeline(global_batch_size, False)
