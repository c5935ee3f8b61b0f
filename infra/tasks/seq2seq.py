"""Sequence-to-sequence task (translation, summarization, synthetic tasks):
the encoder-decoder, label-smoothed loss and beam-search predictions."""
import jax
import jax.numpy as jnp
import numpy as np

from infra import beam_search, losses, synthetic_data
from infra.eval_batching import fixed_size_batches
from models.config import model_config_from
from models.encoder_decoder import EncoderDecoder

_MODEL_INPUTS = ('inputs_positions', 'targets_positions',
                 'inputs_segmentation', 'targets_segmentation')


class Seq2SeqTask:
  """See infra/tasks/__init__.py for the interface."""

  def __init__(self, config):
    self.config = config
    self.model_config = model_config_from(config.model)
    self.eos_id = 1

  # Model -------------------------------------------------------------------
  def build_model(self, train: bool, decode: bool = False):
    return EncoderDecoder(self.model_config, deterministic=not train,
                          decode=decode)

  def example_shapes(self):
    """Shapes of one row: (source length, target length)."""
    data = self.config.data
    if data.source == 'synthetic':
      return data.max_len, data.max_len + 1
    return data.max_source_len, data.max_target_len

  def init_variables(self, rng):
    src_len, tgt_len = self.example_shapes()
    model = self.build_model(train=False)
    return model.init(rng, jnp.ones((1, src_len), jnp.int32),
                      jnp.ones((1, tgt_len), jnp.int32))

  # Loss --------------------------------------------------------------------
  def loss_sums(self, params, batch, rng, train: bool):
    model = self.build_model(train)
    extras = {k: batch[k] for k in _MODEL_INPUTS if k in batch}
    logits = model.apply({'params': params}, batch['inputs'],
                         batch['targets'], **extras,
                         rngs={'dropout': rng} if train else {})
    weights = (batch['targets'] > 0).astype(jnp.float32)
    if 'example_weight' in batch:
      weights = weights * batch['example_weight'][:, None]
    return losses.cross_entropy_sums(
        logits, batch['targets'], weights,
        self.config.label_smoothing if train else 0.0)

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
  def train_batches(self, workdir, global_batch_size: int, host_rows: slice):
    data = self.config.data
    if data.source == 'synthetic':
      return synthetic_data.SyntheticBatches(
          data, self.model_config.vocab_size, self.config.seed,
          global_batch_size, host_rows)
    raise ValueError(f'config.data.source={data.source!r} is not one of '
                     'synthetic')

  def eval_batches(self, global_batch_size: int, host_rows: slice):
    data = self.config.data
    inputs, targets = synthetic_data.eval_examples(
        data, self.model_config.vocab_size, self.config.seed)
    return fixed_size_batches({'inputs': inputs, 'targets': targets},
                              global_batch_size, host_rows)

  def score(self, predictions, batches):
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
