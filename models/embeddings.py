"""Token embeddings (optionally tied to the output layer) and positions."""
import numpy as np
import jax.numpy as jnp
import flax.linen as nn

from models import fast_dots, initializers
from models.config import ModelConfig
from models.dropout import dropout_for
from models.logical_axes import constrain
from models.normalization import layer_norm
from models.token_mask import TokenMask


def sinusoidal_positions(max_len: int, d_model: int) -> np.ndarray:
  """[max_len, d_model]: PE(pos, 2i) = sin(pos / 10000^(2i/d)), cos for 2i+1.

  Sines and cosines interleave as in Vaswani et al. 2017, section 3.5.
  """
  position = np.arange(max_len)[:, None]
  div_term = np.exp(np.arange(0, d_model, 2) * -(np.log(10000.0) / d_model))
  table = np.zeros((max_len, d_model), dtype=np.float32)
  table[:, 0::2] = np.sin(position * div_term)
  table[:, 1::2] = np.cos(position * div_term)[:, :d_model // 2]
  return table


class TokenEmbedding(nn.Module):
  """Token ids [b, l] -> vectors [b, l, d_model]; `attend` gives logits."""
  config: ModelConfig

  def setup(self):
    cfg = self.config
    self.embedding = self.param('embedding',
                                initializers.embedding(cfg, ('vocab', 'embed')),
                                (cfg.vocab_size, cfg.d_model),
                                cfg.params_dtype)

  def __call__(self, ids):
    cfg = self.config
    x = jnp.take(self.embedding, ids, axis=0).astype(cfg.compute_dtype)
    if cfg.scale_embedding:
      x = x * jnp.sqrt(cfg.d_model).astype(cfg.compute_dtype)
    return x

  def attend(self, x):
    """[b, l, d_model] -> logits [b, l, vocab] with the transposed table.

    On the CPU (cfg.fast_paths.dense_dots): one 2-D matmul whose backward
    dots all take the library's fast forms (fast_dots.logits_matmul), with
    float32 logits (the library accumulates in float32 anyway; rounding 30k
    logits per token to bf16 would only lose precision before the softmax).
    """
    cfg = self.config
    table = self.embedding.astype(cfg.compute_dtype)
    if cfg.fast_paths.dense_dots:
      logits = fast_dots.logits_matmul(x.reshape(-1, x.shape[-1]), table,
                                       jnp.float32).reshape(*x.shape[:-1], -1)
    else:
      logits = jnp.einsum('bld,vd->blv', x, table)
    return constrain(logits, 'batch', 'length', 'vocab')


class PositionEmbedding(nn.Module):
  """positions [b, l] -> [b, l, d_model]: sinusoidal table or learned."""
  config: ModelConfig

  @nn.compact
  def __call__(self, positions):
    cfg = self.config
    if cfg.position_embedding == 'sinusoidal':
      table = jnp.asarray(sinusoidal_positions(cfg.max_len, cfg.d_model))
    else:  # learned
      table = self.param('embedding',
                         initializers.embedding(cfg, (None, 'embed')),
                         (cfg.max_len, cfg.d_model), cfg.params_dtype)
    return jnp.take(table, positions, axis=0).astype(cfg.compute_dtype)


class InputEmbedding(nn.Module):
  """Tokens (+ positions, + token types) -> dropout(embedding) [b, l, d].

  `tokens` may be a shared TokenEmbedding (source/target/output sharing).
  Rotary and 'none' positions add nothing here (rotary acts in attention).
  """
  config: ModelConfig
  tokens: nn.Module
  deterministic: bool = True

  @nn.compact
  def __call__(self, ids, positions, token_types=None):
    cfg = self.config
    x = self.tokens(ids)
    if cfg.position_embedding in ('sinusoidal', 'learned'):
      x = x + PositionEmbedding(cfg, name='positions')(positions)
    if cfg.type_vocab_size:
      if token_types is None:
        token_types = jnp.zeros_like(ids)
      x = x + nn.Embed(cfg.type_vocab_size, cfg.d_model,
                       dtype=cfg.compute_dtype, param_dtype=cfg.params_dtype,
                       embedding_init=initializers.embedding(cfg,
                                                             (None, 'embed')),
                       name='token_types')(token_types)
    if cfg.embedding_layer_norm:
      x = layer_norm(cfg, 'norm')(x)
    x = dropout_for(cfg, cfg.dropout_rate)(x, self.deterministic)
    return constrain(x, 'batch', 'length', 'embed')


def next_decode_position(module: nn.Module, length: int):
  """Position of the first of `length` tokens fed to a decoding `module`.

  Kept as a counter in the module's 'cache' collection (created at init,
  advanced by `length` on every later call), so cached decoding continues
  the positions of the tokens before it.
  """
  initialized = module.has_variable('cache', 'position')
  position = module.variable('cache', 'position',
                             lambda: jnp.array(0, jnp.int32))
  current = position.value
  if initialized:
    position.value = current + length
  return current


def causal_positions_and_mask(module: nn.Module, tokens, positions=None,
                              segmentation=None, decode: bool = False):
  """(positions [b, l], self-attention TokenMask) of a causal decoder's
  inputs.

  Positions default to 0..l-1, continued from the cache counter when
  decoding. The mask is causal, within packed segments; None when
  decoding, where the attention cache supplies causality.
  """
  if positions is None:
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    if decode:
      positions = positions + next_decode_position(module, tokens.shape[1])
  if decode:
    return positions, None
  return positions, TokenMask(query_segments=segmentation,
                              key_segments=segmentation, causal=True)
