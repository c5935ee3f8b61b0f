"""A decoder-only language model (GPT-2, Radford et al. 2019) on the shared layers.

Token + learned position embeddings (or rotary, `position_embedding='rope'`),
pre-LN `SelfAttentionLayer` blocks under a causal mask, a final LayerNorm and
an output tied to the token embedding. With `decode=True` the attention layers
keep their keys/values in the 'cache' collection: each call appends one token
(or a whole prompt) per row and positions continue from a counter in the
cache (`init_cache`); `decoding.generation.generate` samples with it.
"""
import jax
import jax.numpy as jnp
import flax.linen as nn

from models import initializers
from models.config import ModelConfig
from models.dense import Dense
from models.embeddings import (InputEmbedding, TokenEmbedding,
                               causal_positions_and_mask)
from models.logical_axes import constrain
from models.normalization import layer_norm
from models.transformer_layers import SelfAttentionLayer, LayerStack


class DecoderLM(nn.Module):
  """Token ids [b, l] -> next-token logits [b, l, vocab] (float32).

  inputs_positions: int [b, l]; default 0..l-1 (continued from the cache
    counter in decode mode).
  inputs_segmentation: int [b, l] packed-example ids; tokens attend only
    within their own segment (training only).
  return_hidden: return the final hidden states [b, l, d_model] instead.
  """
  config: ModelConfig
  deterministic: bool = True
  decode: bool = False

  @nn.compact
  def __call__(self, inputs, inputs_positions=None, inputs_segmentation=None,
               return_hidden: bool = False):
    cfg = self.config
    positions, mask = causal_positions_and_mask(
        self, inputs, inputs_positions, inputs_segmentation, self.decode)
    tokens = TokenEmbedding(cfg, name='token_embedding')
    x = InputEmbedding(cfg, tokens, self.deterministic, name='embed')(
        inputs, positions)
    x = LayerStack(cfg, SelfAttentionLayer, cfg.num_layers, self.deterministic,
                   self.decode, name='stack')(x, mask, positions)
    if cfg.final_layer_norm:
      x = layer_norm(cfg, 'final_norm')(x)
    if return_hidden:
      return x
    if cfg.tie_output_embedding:
      logits = tokens.attend(x)
    else:
      logits = constrain(Dense(
          cfg.vocab_size, use_bias=False, dtype=cfg.compute_dtype,
          param_dtype=cfg.params_dtype,
          kernel_init=initializers.lecun_normal('embed', 'vocab'),
          fast_dots=cfg.fast_paths.dense_dots,
          name='output_projection')(x), 'batch', 'length', 'vocab')
    return logits.astype(jnp.float32)


def output_table(params, config: ModelConfig):
  """The output layer of DecoderLM `params` as [vocab, d_model]:
  logits = hidden @ table.T (training.losses.fused_output_cross_entropy_sums)."""
  if config.tie_output_embedding:
    return params['token_embedding']['embedding']
  return params['output_projection']['kernel'].T


def init_cache(model_cfg: ModelConfig, batch_size: int, max_decode_len: int):
  """An empty decoding cache for `batch_size` rows of up to `max_decode_len`
  tokens, shaped by `jax.eval_shape` (no parameters are initialised)."""
  if (model_cfg.position_embedding == 'learned'
      and max_decode_len > model_cfg.max_len):
    raise ValueError(f'max_decode_len={max_decode_len} is longer than the '
                     f'learned positions (model.max_len={model_cfg.max_len})')
  model = DecoderLM(model_cfg, decode=True)
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0),
                         jnp.zeros((batch_size, max_decode_len), jnp.int32)))
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes['cache'])
