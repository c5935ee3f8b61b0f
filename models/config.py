"""One frozen config describes a model; `ModelConfig(**config.model)` builds it.

Every module receives this object and reads only the fields it needs. Invalid
combinations fail here, at construction, with one line naming the field,
instead of deep inside XLA.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp

from errors import UserError
from models import fast_paths as fast_paths_lib

_CHOICES = {
    'norm_position': ('post', 'pre'),
    'position_embedding': ('sinusoidal', 'learned', 'rope', 't5_relative',
                           'none'),
    'activation': ('relu', 'gelu', 'gelu_tanh', 'silu'),
    'ffn_kind': ('dense', 'gated'),
    'norm_kind': ('layer', 'rms'),
    'attention_impl': ('einsum', 'fused', 'cudnn', 'blockwise'),
    'remat_policy': ('none', 'full', 'save_dots'),
    'dtype': ('float32', 'bfloat16', 'float16'),
    'param_dtype': ('float32', 'bfloat16'),
    'dropout_prng': ('auto', 'jax_default', 'threefry4x32'),
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Hyper-parameters of a Transformer (Vaswani et al. 2017 names)."""
  vocab_size: int = 32000          # tokens; shared by source and target
  d_model: int = 512               # width of the residual stream
  num_heads: int = 8               # attention heads; d_model % num_heads == 0
  num_kv_heads: int = 0            # key/value heads: 0 = num_heads; fewer is
                                   # grouped-query (1: multi-query) attention
  d_ff: int = 2048                 # hidden width of the feed-forward block
  num_layers: int = 6              # encoder layers (and decoder layers)
  num_decoder_layers: int = 0      # 0: same as num_layers
  dropout_rate: float = 0.1        # residual and embedding dropout (P_drop)
  attention_dropout_rate: float = 0.0  # on attention probabilities
  activation_dropout_rate: float = 0.0  # inside the feed-forward block
  dropout_bits: int = 32           # random bits per dropout decision (8/16:
                                   # cheaper, rate rounded; models/dropout.py)
  dropout_prng: str = 'auto'       # generator of the dropout masks: 'auto' is
                                   # threefry4x32 on the CPU backend (cheaper
                                   # there: experiments/performance.md,
                                   # section 9) and jax_default (the key
                                   # flax hands out, threefry2x32) elsewhere
  activation: str = 'relu'
  ffn_kind: str = 'dense'          # 'gated': act(x W1) * (x W3) W2 (silu:
                                   # SwiGLU, gelu: GeGLU; Shazeer 2020)
  norm_position: str = 'post'      # 'post' as in the paper, 'pre' (GPT-2)
  norm_kind: str = 'layer'         # 'layer': LayerNorm; 'rms': RMSNorm
                                   # (Zhang & Sennrich 2019; Llama), no shift
  final_layer_norm: bool = False   # LayerNorm after the last layer (pre-LN)
  embedding_layer_norm: bool = False  # LayerNorm on embeddings (BERT)
  layer_norm_epsilon: float = 1e-6
  position_embedding: str = 'sinusoidal'
  rope_base: float = 10000.0
  # 't5_relative' (Raffel et al. 2020): a learned bias per head and bucket
  # of key - query distance on the attention logits, one table per stack
  # (models/relative_position.py); exact buckets up to half, log-spaced
  # up to max_distance, the rest share the last bucket.
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  scale_attention_logits: bool = True  # q k^T / sqrt(d); False: q k^T (T5)
  max_len: int = 512               # longest sequence (learned positions, cache)
  type_vocab_size: int = 0         # segment (token-type) embeddings (BERT)
  num_labels: int = 2              # classifier outputs (BERT); 1: regression
  share_embeddings: bool = True    # one table for source and target tokens
  tie_output_embedding: bool = True  # logits = x @ embedding^T
  scale_embedding: bool = True     # embeddings * sqrt(d_model), as the paper
  scale_decoder_output: bool = False  # decoder output * d_model^-0.5 before
                                      # the output layer (T5 v1.0, tied)
  use_bias: bool = True           # biases in dense layers and LayerNorms
  init_std: float = 0.0            # 0: Xavier-uniform kernels; >0: N(0, std)
  scale_residual_init: bool = False  # GPT-2: residual-branch output kernels
                                     # at variance / (2 * layers)
  dtype: str = 'float32'           # compute dtype (activations, matmuls)
  param_dtype: str = 'float32'     # storage dtype of parameters
  attention_impl: str = 'einsum'   # 'fused': jax.nn.dot_product_attention
                                   # (XLA's); 'cudnn': the same forced onto
                                   # cuDNN flash attention (a GPU, bf16 or
                                   # fp16); 'blockwise': online softmax in
                                   # plain JAX, nothing of size s x s
  attention_block_size: int = 128  # keys per block of 'blockwise'
  remat_policy: str = 'none'       # activation rematerialisation per layer
  scan_layers: bool = False        # nn.scan over layers: one compiled layer
  cpu_fast_dots: bool = True       # CPU backend: custom-VJP matmuls whose
                                   # backward dots XLA:CPU runs in library
                                   # (AMX for bf16) kernels, in bf16 and
                                   # (not attention) float32
                                   # (models/fast_paths.py); no effect on GPU

  def __post_init__(self):
    for name, choices in _CHOICES.items():
      value = getattr(self, name)
      if value not in choices:
        raise UserError(
            f'model.{name}={value!r} is not one of {", ".join(choices)}')
    for name in ('vocab_size', 'd_model', 'num_heads', 'd_ff', 'num_layers',
                 'max_len', 'num_labels', 'attention_block_size'):
      if getattr(self, name) <= 0:
        raise UserError(f'model.{name} must be positive, got '
                        f'{getattr(self, name)}')
    if self.d_model % self.num_heads:
      raise UserError(
          f'model.d_model={self.d_model} is not divisible by '
          f'model.num_heads={self.num_heads}')
    if self.num_kv_heads < 0:
      raise UserError(f'model.num_kv_heads must be >= 0 (0: num_heads), got '
                      f'{self.num_kv_heads}')
    if self.num_heads % self.kv_heads:
      raise UserError(
          f'model.num_heads={self.num_heads} is not divisible by '
          f'model.num_kv_heads={self.num_kv_heads} (0: num_heads)')
    if self.position_embedding == 'rope' and self.head_dim % 2:
      raise UserError(f'rotary positions need an even head dimension, got '
                      f'd_model/num_heads={self.head_dim}')
    for name in ('dropout_rate', 'attention_dropout_rate',
                 'activation_dropout_rate'):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise UserError(f'model.{name} must be in [0, 1), got '
                        f'{getattr(self, name)}')
    if self.dropout_bits not in (8, 16, 32):
      raise UserError(f'model.dropout_bits={self.dropout_bits} is not one of '
                      '8, 16, 32')
    for name in ('dropout_rate', 'attention_dropout_rate',
                 'activation_dropout_rate'):
      rate = getattr(self, name)
      if rate > 0 and round(rate * 2 ** self.dropout_bits) == 0:
        raise UserError(f'model.{name}={rate} rounds to 0 with '
                        f'model.dropout_bits={self.dropout_bits}; use more '
                        'bits or rate 0')
    if self.relative_attention_num_buckets < 4:
      raise UserError('model.relative_attention_num_buckets must be >= 4, '
                      f'got {self.relative_attention_num_buckets}')
    if self.relative_attention_max_distance <= (
        self.relative_attention_num_buckets // 2):
      raise UserError(
          'model.relative_attention_max_distance must exceed half of '
          f'model.relative_attention_num_buckets='
          f'{self.relative_attention_num_buckets}, got '
          f'{self.relative_attention_max_distance}')
    if (self.attention_impl == 'blockwise'
        and self.position_embedding == 't5_relative'):
      raise UserError('model.attention_impl="blockwise" adds no attention '
                      'bias; model.position_embedding="t5_relative" needs '
                      '"einsum" or "fused"')
    if (self.attention_impl in ('fused', 'cudnn')
        and self.attention_dropout_rate > 0):
      raise UserError(f'model.attention_impl="{self.attention_impl}" (jax.'
                      'nn.dot_product_attention) has no attention dropout; '
                      'set model.attention_dropout_rate=0')
    if self.attention_impl == 'cudnn' and self.dtype == 'float32':
      raise UserError('model.attention_impl="cudnn" needs model.dtype '
                      'bfloat16 or float16 (cuDNN flash attention), got '
                      '"float32"')
    if self.attention_impl == 'blockwise' and self.attention_dropout_rate > 0:
      raise UserError('model.attention_impl="blockwise" has no attention '
                      'dropout; set model.attention_dropout_rate=0')

  @property
  def head_dim(self) -> int:
    return self.d_model // self.num_heads

  @property
  def kv_heads(self) -> int:
    """Key/value heads; each serves num_heads // kv_heads query heads."""
    return self.num_kv_heads or self.num_heads

  @property
  def decoder_layers(self) -> int:
    return self.num_decoder_layers or self.num_layers

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def params_dtype(self):
    return jnp.dtype(self.param_dtype)

  @functools.cached_property
  def fast_paths(self) -> fast_paths_lib.FastPaths:
    """The CPU fast paths on this process's backend, resolved once."""
    return fast_paths_lib.resolve(self, jax.default_backend())

  def replace(self, **changes) -> 'ModelConfig':
    return dataclasses.replace(self, **changes)


def model_config_from(config_dict) -> ModelConfig:
  """Builds a ModelConfig from a ConfigDict/dict, naming unknown fields."""
  values = dict(config_dict)
  known = {f.name for f in dataclasses.fields(ModelConfig)}
  unknown = sorted(set(values) - known)
  if unknown:
    raise UserError(f'unknown model config field(s): model.{", model.".join(unknown)}')
  return ModelConfig(**values)
