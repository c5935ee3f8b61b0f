"""The encoder-decoder Transformer of Vaswani et al. 2017.

The network only makes logits; losses live in `training/`, decoding in
`decoding/`.
Token id 0 is padding and also the first decoder input (the targets shifted
right), so targets never contain 0 except as padding.
"""
import jax.numpy as jnp
import flax.linen as nn

from models import initializers
from models.config import ModelConfig
from models.dense import Dense
from models.embeddings import (InputEmbedding, TokenEmbedding,
                               causal_positions_and_mask)
from models.logical_axes import constrain
from models.normalization import layer_norm
from models.relative_position import bias_table
from models.token_mask import TokenMask
from models.transformer_layers import (DecoderLayer, LayerStack,
                                       SelfAttentionLayer)


def shift_right(targets, segmentation=None):
  """[b, t] targets -> decoder inputs [b, t]: 0 first, then targets[:-1].

  With packing, every segment starts again from 0.
  """
  shifted = jnp.pad(targets, ((0, 0), (1, 0)))[:, :-1]
  if segmentation is not None:
    shifted = jnp.where(
        segmentation == jnp.pad(segmentation, ((0, 0), (1, 0)))[:, :-1],
        shifted, 0)
  return shifted


def default_positions(tokens):
  return jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)


class Encoder(nn.Module):
  """Source tokens [b, s] -> one vector per source position [b, s, d]."""
  config: ModelConfig
  token_embedding: nn.Module
  deterministic: bool = True

  @nn.compact
  def __call__(self, inputs, positions=None, segmentation=None):
    cfg = self.config
    positions = default_positions(inputs) if positions is None else positions
    mask = TokenMask(key_valid=inputs != 0, query_segments=segmentation,
                     key_segments=segmentation)
    x = InputEmbedding(cfg, self.token_embedding, self.deterministic,
                       name='embed')(inputs, positions)
    x = LayerStack(cfg, SelfAttentionLayer, cfg.num_layers, self.deterministic,
                   name='stack')(x, mask, positions, bias_table(self, cfg))
    if cfg.final_layer_norm:
      x = layer_norm(cfg, 'final_norm')(x)
    return x


class Decoder(nn.Module):
  """Decoder inputs [b, t] and encoder outputs [b, s, d] -> [b, t, d].

  With `decode=True`, inputs are the next token(s) of every row and
  positions continue from a counter kept in the 'cache' collection.
  """
  config: ModelConfig
  token_embedding: nn.Module
  deterministic: bool = True
  decode: bool = False

  @nn.compact
  def __call__(self, encoded, inputs, decoder_inputs, positions=None,
               segmentation=None, inputs_segmentation=None):
    cfg = self.config
    positions, self_mask = causal_positions_and_mask(
        self, decoder_inputs, positions, segmentation, self.decode)
    packed = segmentation is not None and inputs_segmentation is not None
    cross_mask = TokenMask(
        key_valid=inputs != 0,
        query_segments=segmentation if packed else None,
        key_segments=inputs_segmentation if packed else None)
    y = InputEmbedding(cfg, self.token_embedding, self.deterministic,
                       name='embed')(decoder_inputs, positions)
    y = LayerStack(cfg, DecoderLayer, cfg.decoder_layers, self.deterministic,
                   self.decode, name='stack')(
                       y, encoded, self_mask, cross_mask, positions,
                       bias_table(self, cfg))
    if cfg.final_layer_norm:
      y = layer_norm(cfg, 'final_norm')(y)
    return y


class EncoderDecoder(nn.Module):
  """Source [b, s] and targets [b, t] -> next-token logits [b, t, vocab]."""
  config: ModelConfig
  deterministic: bool = True
  decode: bool = False

  def setup(self):
    cfg = self.config
    if cfg.share_embeddings:
      source_embedding = target_embedding = TokenEmbedding(
          cfg, name='token_embedding')
    else:
      source_embedding = TokenEmbedding(cfg, name='source_embedding')
      target_embedding = TokenEmbedding(cfg, name='target_embedding')
    self.target_embedding = target_embedding
    self.encoder = Encoder(cfg, source_embedding, self.deterministic)
    self.decoder = Decoder(cfg, target_embedding, self.deterministic,
                           self.decode)
    if not cfg.tie_output_embedding:
      self.output_projection = Dense(
          cfg.vocab_size, use_bias=False, dtype=cfg.compute_dtype,
          param_dtype=cfg.params_dtype,
          kernel_init=initializers.lecun_normal('embed', 'vocab'),
          fast_dots=cfg.fast_paths.dense_dots)

  def encode(self, inputs, inputs_positions=None, inputs_segmentation=None):
    """[b, s] source ids -> [b, s, d_model]."""
    return self.encoder(inputs, inputs_positions, inputs_segmentation)

  def decode_logits(self, encoded, inputs, decoder_inputs,
                    targets_positions=None, targets_segmentation=None,
                    inputs_segmentation=None, return_hidden: bool = False):
    """Encoder outputs and decoder input ids [b, t] -> logits [b, t, vocab]
    (or, with return_hidden, the decoder's output [b, t, d_model], times
    d_model^-0.5 with scale_decoder_output: what the output layer reads)."""
    y = self.decoder(encoded, inputs, decoder_inputs, targets_positions,
                     targets_segmentation, inputs_segmentation)
    if self.config.scale_decoder_output:  # before output_table's layer too
      y = y * self.config.d_model ** -0.5
    if return_hidden:
      return y
    if self.config.tie_output_embedding:
      logits = self.target_embedding.attend(y)
    else:
      logits = constrain(self.output_projection(y), 'batch', 'length', 'vocab')
    return logits.astype(jnp.float32)

  def __call__(self, inputs, targets, inputs_positions=None,
               targets_positions=None, inputs_segmentation=None,
               targets_segmentation=None, return_hidden: bool = False):
    """Teacher forcing: logits [b, t, vocab] for predicting `targets`
    (return_hidden: the final hidden states [b, t, d_model] instead)."""
    encoded = self.encode(inputs, inputs_positions, inputs_segmentation)
    decoder_inputs = shift_right(targets, targets_segmentation)
    return self.decode_logits(encoded, inputs, decoder_inputs,
                              targets_positions, targets_segmentation,
                              inputs_segmentation, return_hidden)


def output_table(params, config: ModelConfig):
  """The output layer of EncoderDecoder `params` as [vocab, d_model]:
  logits = hidden @ table.T (training.losses.fused_output_cross_entropy_sums)."""
  if not config.tie_output_embedding:
    return params['output_projection']['kernel'].T
  return params['token_embedding' if config.share_embeddings
                else 'target_embedding']['embedding']
