"""Parameter initialisers chosen by `ModelConfig.init_std`.

Each takes the parameter's logical axis names (models/logical_axes.py), one
per dimension, and returns an initialiser whose value carries them.
"""
import flax.linen as nn

from models.config import ModelConfig
from models.logical_axes import with_axes


def kernel(cfg: ModelConfig, axes: tuple, residual_output: bool = False,
           variance: float = 1.0):
  """Dense kernels: Xavier-uniform (the paper's codebase) or N(0, init_std).

  residual_output: the last projection of a residual branch (attention
  'out', feed-forward 'wo' or gated 'w2'). With `cfg.scale_residual_init` its variance is
  divided by the number of residual branches, 2 per layer, as GPT-2 does
  (std 0.02 / sqrt(2 * n_layer)), so the residual stream's variance at
  initialisation does not grow with depth. variance: a further factor on
  the variance (the query's 1/head_dim for unscaled attention logits).
  """
  scale = variance
  if residual_output and cfg.scale_residual_init:
    scale = 1.0 / (2 * max(cfg.num_layers, cfg.decoder_layers))
  if cfg.init_std > 0:
    return with_axes(nn.initializers.normal(stddev=cfg.init_std * scale ** 0.5),
                     *axes)
  return with_axes(nn.initializers.variance_scaling(scale, 'fan_avg',
                                                    'uniform'), *axes)


def embedding(cfg: ModelConfig, axes: tuple):
  """Embeddings: N(0, d_model^-1/2), so scaled-up tied embeddings start at
  unit variance; or N(0, init_std) as in BERT and GPT-2."""
  return with_axes(
      nn.initializers.normal(stddev=cfg.init_std or cfg.d_model ** -0.5),
      *axes)


def zeros(*axes):
  """Biases (zeros)."""
  return with_axes(nn.initializers.zeros_init(), *axes)


def ones(*axes):
  """Norm scales (ones)."""
  return with_axes(nn.initializers.ones_init(), *axes)


def lecun_normal(*axes):
  """flax's default Dense kernel, for layers that keep it."""
  return with_axes(nn.initializers.lecun_normal(), *axes)
