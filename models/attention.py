"""Multi-head attention: the one attention implementation of the codebase.

Shapes: batch b, query length q, key length k, heads h, head dim d.
Masks say where a query may attend to a key: the models pass a TokenMask
of per-token pieces (padding, packed segments, causality;
models/token_mask.py), which blockwise attention reads block by block; the
einsum and fused attentions take its dense form, a boolean broadcastable to
[b, 1 or h, q, k], which may also be given directly (the helpers below
build it) so that padded or packed tokens never mix.
"""
import jax
import jax.numpy as jnp
import flax.linen as nn

from errors import UserError
from models import fast_dots
from models.blockwise_attention import blockwise_attention
from models import initializers
from models.config import ModelConfig
from models.dense import Dense
from models.dropout import apply_dropout
from models.logical_axes import constrain
from models.relative_position import relative_attention_bias
from models.token_mask import TokenMask


def padding_mask(query_tokens, key_tokens, pad_id: int = 0):
  """[b, q], [b, k] token ids -> [b, 1, q, k]: neither side is padding."""
  return attention_mask(query_tokens != pad_id, key_tokens != pad_id)


def attention_mask(query_valid, key_valid):
  """[b, q], [b, k] booleans -> [b, 1, q, k] mask (both positions valid)."""
  return (query_valid[:, None, :, None] & key_valid[:, None, None, :])


def causal_mask(length: int):
  """[1, 1, length, length]: query i may attend to keys j <= i."""
  idx = jnp.arange(length)
  return (idx[None, :] <= idx[:, None])[None, None]


def segment_mask(query_segments, key_segments):
  """[b, q], [b, k] segment ids -> [b, 1, q, k]: same packed example only."""
  return query_segments[:, None, :, None] == key_segments[:, None, None, :]


def combine_masks(*masks):
  """Logical AND of the masks that are not None (None if all are None)."""
  masks = [m for m in masks if m is not None]
  if not masks:
    return None
  mask = masks[0]
  for m in masks[1:]:
    mask = jnp.logical_and(mask, m)
  return mask


def cudnn_mask(mask, q_len: int, k_len: int):
  """(boolean mask or None, is_causal) for jax.nn.dot_product_attention
  with cuDNN: the causality of a TokenMask whose queries are its keys (a
  training step) goes to cuDNN's own causal mask, which skips the masked
  blocks; the rest (padding, segments; a decoding step's causality) as a
  [b, 1, q, k] boolean, which cuDNN reads as an additive bias."""
  if not isinstance(mask, TokenMask):
    return mask, False
  aligned = mask.causal and mask.query_offset is None and q_len == k_len
  if not aligned:
    return mask.dense(q_len, k_len), False
  rest = mask.replace(causal=False)
  if rest.query_valid is None and not rest.key_pieces():
    return None, True
  return rest.dense(q_len, k_len), True


def rotary_embedding(x, positions, base: float):
  """Rotates pairs of features by position (Su et al. 2021, RoFormer).

  x: [b, l, h, d]; positions: [b, l] int. Returns x rotated, same shape.
  """
  d = x.shape[-1]
  inv_freq = 1.0 / (base ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
  angles = positions[..., None].astype(jnp.float32) * inv_freq  # [b, l, d/2]
  sin = jnp.sin(angles)[:, :, None, :]
  cos = jnp.cos(angles)[:, :, None, :]
  # Halves rather than interleaved pairs: the GPT-NeoX / LLaMA layout.
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)
  return rotated.astype(x.dtype)


def dot_product_attention(query, key, value, mask, *, dropout_rate: float,
                          dropout_rng, deterministic: bool, impl: str,
                          dtype, dropout_bits: int = 32,
                          dropout_prng: str | None = None,
                          library_dots: bool = False,
                          block_size: int = 128, bias=None,
                          scale_logits: bool = True):
  """softmax(q k^T / sqrt(d) + bias + mask) v.  q: [b,q,h,d], k,v: [b,k,g,d].

  bias: float [b or 1, h, q, k] added to the logits (T5's relative
  positions), or None. scale_logits=False drops the 1/sqrt(d) (T5 folds it
  into the initialisation).

  g key/value heads (g divides h; grouped-query attention when g < h): kv
  head j serves query heads j*h/g .. (j+1)*h/g - 1, as HF's repeat_kv.
  library_dots: run both products as fast_dots matmuls over [b, h, ., d]
  (bf16 on CPU: cfg.fast_paths.attention_dots), else as XLA einsums.
  impl 'blockwise': online softmax over key blocks of `block_size`
  (models/blockwise_attention.py); no dropout.
  impl 'fused': jax.nn.dot_product_attention, XLA's (its default
  implementation); 'cudnn': the same, forced onto cuDNN flash attention.
  mask: a TokenMask, a boolean broadcastable to [b, h, q, k] (not for
  'blockwise', which never holds one), or None.
  """
  is_causal = False
  if impl == 'cudnn':
    mask, is_causal = cudnn_mask(mask, query.shape[1], key.shape[1])
  elif isinstance(mask, TokenMask) and impl != 'blockwise':
    mask = mask.dense(query.shape[1], key.shape[1])
  if impl in ('fused', 'cudnn'):
    # Both take grouped key/value heads as they are.
    return jax.nn.dot_product_attention(
        query, key, value, bias=bias, mask=mask, is_causal=is_causal,
        scale=None if scale_logits else 1.0,
        implementation='cudnn' if impl == 'cudnn' else None)
  groups = query.shape[2] // key.shape[2]
  if groups > 1:
    # The copies are [b, k, h, d], small beside the [b, h, q, k] logits;
    # the cache and the projections stay at g heads.
    key = jnp.repeat(key, groups, axis=2)
    value = jnp.repeat(value, groups, axis=2)
  if scale_logits:
    query = query / jnp.sqrt(query.shape[-1]).astype(query.dtype)
  if impl == 'blockwise':  # config.py rejects a bias with it
    return blockwise_attention(query, key, value, mask, block_size)
  # [b, l, h, d] <-> [b, h, l, d], copied (and so the gradients) so that
  # the dots get row-major operands (fast_dots.materialize).
  heads_first = lambda x: fast_dots.swapaxes(x, 1, 2)
  if library_dots:
    logits = fast_dots.matmul_nt(heads_first(query), heads_first(key),
                                 jnp.float32)
  else:
    logits = jnp.einsum('bqhd,bkhd->bhqk', query, key,
                        preferred_element_type=jnp.float32)
  if bias is not None:
    logits = logits + bias
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  weights = jax.nn.softmax(logits, axis=-1)
  if not deterministic and dropout_rate > 0:
    weights = apply_dropout(weights, dropout_rng, dropout_rate, dropout_bits,
                            dropout_prng)
  if library_dots:
    return heads_first(fast_dots.matmul(weights.astype(dtype),
                                        heads_first(value)))
  return jnp.einsum('bhqk,bkhd->bqhd', weights.astype(dtype), value)


class MultiHeadAttention(nn.Module):
  """Multi-head attention with an optional key/value cache for decoding.

  Keys and values have `config.kv_heads` heads (fewer than the query heads
  in grouped-query attention). With `decode=True` the module keeps
  `cached_key`/`cached_value` [b, max_len, kv_heads, d] and `cache_index`
  in the 'cache' collection; each call appends its keys/values at
  `cache_index` (one token, or a whole prompt) and attends causally over
  everything cached so far. The first call with
  `decode=True` (during `init`) only creates the cache, sized by the inputs.
  """
  config: ModelConfig
  deterministic: bool = True
  decode: bool = False

  @nn.compact
  def __call__(self, inputs_q, inputs_kv, mask=None, positions_q=None,
               positions_kv=None, bias_table=None, bidirectional=True):
    """inputs_q: [b, q, d_model], inputs_kv: [b, k, d_model] -> [b, q, d_model].

    mask: a TokenMask (models/token_mask.py), or a boolean [b, 1, q, k] (or
      broadcastable; not with attention_impl 'blockwise'); in decode mode
      its keys are the cache slots and the cache's causality is added.
    positions_*: [b, len] int, for rotary positions and T5's relative bias.
    bias_table: the stack's T5 relative-position table [buckets, heads]
      (models/relative_position.py), bidirectional or looking back only;
      with decode=True the keys are the cache slots 0..max_len-1.
    """
    cfg = self.config
    def dense(name, features, kernel_axes, bias_axes, axis=-1):
      return Dense(
          features, axis=axis, use_bias=cfg.use_bias,
          dtype=cfg.compute_dtype, param_dtype=cfg.params_dtype, name=name,
          kernel_init=initializers.kernel(
              cfg, kernel_axes, residual_output=name == 'out',
              # Unscaled logits (T5): the 1/sqrt(d) moves into the query's
              # initial weights instead, as T5 initialises them.
              variance=1.0 / cfg.head_dim if name == 'query' and
              not cfg.scale_attention_logits else 1.0),
          bias_init=initializers.zeros(*bias_axes),
          fast_dots=cfg.fast_paths.dense_dots)
    heads = (cfg.num_heads, cfg.head_dim)
    kv_heads = (cfg.kv_heads, cfg.head_dim)
    query = dense('query', heads, ('embed', 'heads', 'kv'),
                  ('heads', 'kv'))(inputs_q)
    key = dense('key', kv_heads, ('embed', 'kv_heads', 'kv'),
                ('kv_heads', 'kv'))(inputs_kv)
    value = dense('value', kv_heads, ('embed', 'kv_heads', 'kv'),
                  ('kv_heads', 'kv'))(inputs_kv)
    query = constrain(query, 'batch', 'length', 'heads', 'kv')
    key = constrain(key, 'batch', 'length', 'kv_heads', 'kv')
    value = constrain(value, 'batch', 'length', 'kv_heads', 'kv')

    if cfg.position_embedding == 'rope':
      query = rotary_embedding(query, positions_q, cfg.rope_base)
      key = rotary_embedding(key, positions_kv, cfg.rope_base)

    if self.decode:
      key, value, mask = self._update_cache(key, value, mask)
    bias = None
    if cfg.position_embedding == 't5_relative':
      if bias_table is None:
        raise UserError('model.position_embedding="t5_relative" needs the '
                        "stack's bias table: the encoder-decoder only")
      if self.decode:
        positions_kv = jnp.arange(key.shape[1])[None]
      bias = relative_attention_bias(bias_table, positions_q, positions_kv,
                                     bidirectional, cfg)

    dropout_rng = None
    if not self.deterministic and cfg.attention_dropout_rate > 0:
      dropout_rng = self.make_rng('dropout')
    out = dot_product_attention(
        query, key, value, mask, dropout_rate=cfg.attention_dropout_rate,
        dropout_rng=dropout_rng, deterministic=self.deterministic,
        impl=cfg.attention_impl, dtype=cfg.compute_dtype,
        dropout_bits=cfg.dropout_bits,
        dropout_prng=cfg.fast_paths.dropout_prng,
        library_dots=cfg.fast_paths.attention_dots,
        block_size=cfg.attention_block_size, bias=bias,
        scale_logits=cfg.scale_attention_logits)
    out = constrain(out, 'batch', 'length', 'heads', 'kv')
    return constrain(
        dense('out', cfg.d_model, ('heads', 'kv', 'embed'), ('embed',),
              axis=(-2, -1))(out), 'batch', 'length', 'embed')

  def _update_cache(self, key, value, mask):
    """Writes key/value [b, l, kv_heads, d] at cache_index; returns the
    full cache."""
    initialized = self.has_variable('cache', 'cached_key')
    cached_key = self.variable('cache', 'cached_key', jnp.zeros, key.shape,
                               key.dtype)
    cached_value = self.variable('cache', 'cached_value', jnp.zeros,
                                 value.shape, value.dtype)
    cache_index = self.variable('cache', 'cache_index',
                                lambda: jnp.array(0, dtype=jnp.int32))
    if not initialized:  # init only sizes the cache; attend over the inputs
      return key, value, mask
    length = key.shape[1]
    max_len = cached_key.value.shape[1]
    index = cache_index.value
    start = (0, index, 0, 0)
    cached_key.value = jax.lax.dynamic_update_slice(cached_key.value, key,
                                                    start)
    cached_value.value = jax.lax.dynamic_update_slice(cached_value.value,
                                                      value, start)
    cache_index.value = index + length
    # Query i sits at slot index + i and sees the slots up to it.
    visible = TokenMask(causal=True, query_offset=index)
    if mask is None or isinstance(mask, TokenMask):
      mask = (visible if mask is None else
              mask.replace(causal=True, query_offset=index))
    else:  # a dense mask over the cache slots
      mask = combine_masks(visible.dense(length, max_len), mask)
    return cached_key.value, cached_value.value, mask
