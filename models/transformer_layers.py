"""The self-attention layer, the decoder layer, and the stack that repeats
them.

A layer is a residual sub-layer sequence. Post-LN (the paper):
x = LN(x + Dropout(F(x))); pre-LN (GPT-2, more stable when deep):
x = x + Dropout(F(LN(x))).
"""
import jax
import flax.linen as nn

from models.attention import MultiHeadAttention
from models.config import ModelConfig
from models.dropout import dropout_for
from models.feed_forward import FeedForward
from models.logical_axes import constrain
from models.normalization import layer_norm


class Residual(nn.Module):
  """Wraps one sub-layer F with dropout, the residual and a LayerNorm."""
  config: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x, sublayer):
    cfg = self.config
    norm = layer_norm(cfg, 'norm')
    if cfg.norm_position == 'pre':
      y = sublayer(norm(x))
      return x + dropout_for(cfg, cfg.dropout_rate)(y, self.deterministic)
    y = sublayer(x)
    return norm(x + dropout_for(cfg, cfg.dropout_rate)(y, self.deterministic))


class SelfAttentionLayer(nn.Module):
  """Self-attention then feed-forward.  x: [b, l, d_model] -> same.

  The layer of every encoder (the encoder-decoder's, BERT's) and the block
  of decoder-only LMs, which pass a causal mask (`decode` caches keys and
  values). mask: a TokenMask (models/token_mask.py) or a dense boolean mask.
  """
  config: ModelConfig
  deterministic: bool = True
  decode: bool = False
  scanned: bool = False  # nn.scan wants (carry, out) back

  @nn.compact
  def __call__(self, x, mask=None, positions=None, bias_table=None):
    cfg, det = self.config, self.deterministic
    attention = MultiHeadAttention(cfg, det, self.decode, name='attention')
    x = Residual(cfg, det, name='attention_residual')(
        x, lambda h: attention(h, h, mask, positions, positions, bias_table))
    x = Residual(cfg, det, name='ffn_residual')(
        x, FeedForward(cfg, det, name='ffn'))
    x = constrain(x, 'batch', 'length', 'embed')
    return (x, None) if self.scanned else x


class DecoderLayer(nn.Module):
  """Masked self-attention, attention over the encoder, feed-forward.

  x: [b, t, d_model]; encoded: [b, s, d_model] (one vector per source
  position); self_mask, cross_mask: TokenMasks over [t, t] and [t, s];
  bias_table: the decoder's T5 relative-position table (looking back only).
  """
  config: ModelConfig
  deterministic: bool = True
  decode: bool = False
  scanned: bool = False

  @nn.compact
  def __call__(self, x, encoded, self_mask=None, cross_mask=None,
               positions=None, bias_table=None):
    cfg, det = self.config, self.deterministic
    self_attention = MultiHeadAttention(cfg, det, self.decode,
                                        name='self_attention')
    x = Residual(cfg, det, name='self_attention_residual')(
        x, lambda h: self_attention(h, h, self_mask, positions, positions,
                                    bias_table, bidirectional=False))
    # Cross-attention keys are the (fixed) encoder outputs: no cache needed,
    # and no rotary or relative positions (source and target positions are
    # unrelated).
    cross_cfg = cfg.replace(position_embedding='none') \
        if cfg.position_embedding in ('rope', 't5_relative') else cfg
    cross_attention = MultiHeadAttention(cross_cfg, det, name='cross_attention')
    x = Residual(cfg, det, name='cross_attention_residual')(
        x, lambda h: cross_attention(h, encoded, cross_mask))
    x = Residual(cfg, det, name='ffn_residual')(
        x, FeedForward(cfg, det, name='ffn'))
    x = constrain(x, 'batch', 'length', 'embed')
    return (x, None) if self.scanned else x


_REMAT_POLICIES = {
    'full': None,  # save nothing: recompute the whole layer
    'save_dots': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class LayerStack(nn.Module):
  """`num_layers` copies of `layer_cls`, looped or scanned, optionally remat.

  Scanning compiles one layer instead of N (compile time flat in depth);
  its parameters are stacked along a leading axis, logically 'layers'.
  """
  config: ModelConfig
  layer_cls: type
  num_layers: int
  deterministic: bool = True
  decode: bool = False

  @nn.compact
  def __call__(self, x, *args):
    cfg = self.config
    layer_cls = self.layer_cls
    if cfg.remat_policy != 'none':
      layer_cls = nn.remat(layer_cls, policy=_REMAT_POLICIES[cfg.remat_policy],
                           prevent_cse=not cfg.scan_layers)
    if cfg.scan_layers:
      scanned = nn.scan(
          layer_cls, variable_axes={'params': 0, 'cache': 0},
          split_rngs={'params': True, 'dropout': True},
          in_axes=(nn.broadcast,) * len(args), length=self.num_layers,
          metadata_params={nn.PARTITION_NAME: 'layers'})
      x, _ = scanned(cfg, self.deterministic, self.decode, scanned=True,
                     name='layers')(x, *args)
      return x
    for i in range(self.num_layers):
      x = layer_cls(cfg, self.deterministic, self.decode,
                    name=f'layers_{i}')(x, *args)
    return x
