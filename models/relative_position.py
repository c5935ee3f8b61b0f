"""T5's relative position bias (Raffel et al. 2020, section 2.1).

Each attention logit gets a learned scalar per head that depends only on
the bucket of the key's offset from the query (key - query position). Small
offsets get a bucket each; larger ones share logarithmically wider buckets
up to `max_distance`, beyond which all offsets share the last bucket. The
encoder's buckets are bidirectional (half for keys after the query); the
decoder's self-attention only looks back, so all buckets cover the past.

One table [num_buckets, heads] per stack, created by the Encoder/Decoder
(`bias_table`) and passed to every layer's self-attention; cross-attention
has none. T5 gathers the bias in the first layer and hands it on; here each
self-attention gathers it from the shared table and its own positions
(`relative_attention_bias`), which follows packed rows' positions and the
KV cache's slots for free. The bucket function is Mesh TensorFlow's, as
HF's `T5Attention._relative_position_bucket`, down to float32 rounding.
"""
import math

import jax.numpy as jnp
import flax.linen as nn

from models import initializers
from models.config import ModelConfig


def relative_position_bucket(relative_position, bidirectional: bool,
                             num_buckets: int, max_distance: int):
  """int offsets (key - query) -> int32 buckets in [0, num_buckets)."""
  buckets = jnp.zeros_like(relative_position, jnp.int32)
  if bidirectional:
    num_buckets //= 2
    buckets = buckets + (relative_position > 0).astype(jnp.int32) * num_buckets
    distance = jnp.abs(relative_position)
  else:
    distance = -jnp.minimum(relative_position, 0)
  max_exact = num_buckets // 2
  is_small = distance < max_exact
  # log(0) would be taken where the small branch wins anyway: keep it finite.
  safe = jnp.maximum(distance, max_exact).astype(jnp.float32)
  if_large = max_exact + (
      jnp.log(safe / max_exact) / math.log(max_distance / max_exact)
      * (num_buckets - max_exact)).astype(jnp.int32)
  if_large = jnp.minimum(if_large, num_buckets - 1)
  return buckets + jnp.where(is_small, distance, if_large).astype(jnp.int32)


def bias_table(module: nn.Module, cfg: ModelConfig):
  """The stack's [num_buckets, heads] parameter 'relative_attention_bias'
  (created on `module`), or None without t5_relative positions."""
  if cfg.position_embedding != 't5_relative':
    return None
  return module.param('relative_attention_bias',
                      initializers.embedding(cfg, (None, 'heads')),
                      (cfg.relative_attention_num_buckets, cfg.num_heads),
                      cfg.params_dtype)


def relative_attention_bias(table, query_positions, key_positions,
                            bidirectional: bool, cfg: ModelConfig):
  """table [buckets, h], positions [b, q] and [b or 1, k] -> float32
  bias [b, h, q, k] to add to the attention logits."""
  offsets = key_positions[:, None, :] - query_positions[:, :, None]
  buckets = relative_position_bucket(
      offsets, bidirectional, cfg.relative_attention_num_buckets,
      cfg.relative_attention_max_distance)
  values = jnp.take(table.astype(jnp.float32), buckets, axis=0)  # [b,q,k,h]
  return jnp.transpose(values, (0, 3, 1, 2))
