"""Attention masks kept as per-token pieces, so that no [q, k] array need
exist until an attention asks for one.

Query i may attend to key j when every piece that is given allows it:

  padding   query_valid[b, i] and key_valid[b, j]
  packing   query_segments[b, i] == key_segments[b, j] (same example)
  causal    j <= query_offset + i; query_offset is where the queries sit
            among the keys: None (0) in training, the cache index when
            decoding

The models build a `TokenMask`; the einsum and fused attentions take its
`dense` [b or 1, 1, q, k] boolean, and blockwise attention builds one key
block's mask at a time from the block's slice of the key-side pieces
(models/blockwise_attention.py), so its memory stays linear in length.
"""
import flax.struct
import jax
import jax.numpy as jnp

KEY_PIECES = ('key_valid', 'key_segments')  # [b, k]: what a key block slices


@flax.struct.dataclass
class TokenMask:
  """Per-token mask pieces (None: not restricted by that piece)."""
  query_valid: jax.Array | None = None     # bool [b, q]
  key_valid: jax.Array | None = None       # bool [b, k]
  query_segments: jax.Array | None = None  # int [b, q]; with key_segments
  key_segments: jax.Array | None = None    # int [b, k]
  # int scalar, causal only. None (not 0) when the queries are the keys, so
  # that this stays known through nn.scan and remat, which trace numbers.
  query_offset: jax.Array | None = None
  causal: bool = flax.struct.field(pytree_node=False, default=False)

  def key_pieces(self) -> dict:
    """{name: [b, k] array} of the key-side pieces that are given."""
    return {name: getattr(self, name) for name in KEY_PIECES
            if getattr(self, name) is not None}

  def dense(self, q_len: int, k_len: int, key_start=0):
    """[b or 1, 1, q_len, k_len] bool, True where a query may attend.

    key_start: the index of the first key among all keys, for a block of
    keys whose key-side pieces hold that block's slice only.
    """
    if (self.query_segments is None) != (self.key_segments is None):
      raise ValueError('TokenMask needs both query_segments and '
                       'key_segments, or neither')
    mask = jnp.ones((1, 1, q_len, k_len), bool)
    if self.causal:
      query = jnp.arange(q_len)
      if self.query_offset is not None:
        query = query + self.query_offset
      key = key_start + jnp.arange(k_len)
      mask = (key[None, :] <= query[:, None])[None, None]
    if self.query_valid is not None:
      mask = mask & self.query_valid[:, None, :, None]
    if self.key_valid is not None:
      mask = mask & self.key_valid[:, None, None, :]
    if self.query_segments is not None:
      mask = mask & (self.query_segments[:, None, :, None] ==
                     self.key_segments[:, None, None, :])
    return mask
