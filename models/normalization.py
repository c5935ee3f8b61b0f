"""Normalisation layers built from the model config: LayerNorm (Ba et al.
2016) or RMSNorm (Zhang & Sennrich 2019), by `model.norm_kind`."""
import flax.linen as nn

from models import initializers
from models.config import ModelConfig


def layer_norm(cfg: ModelConfig, name: str) -> nn.Module:
  """The configured norm; its gain is named 'scale' in both kinds.

  flax computes the statistics in float32 even for bf16 activations.
  use_bias=False drops the LayerNorm's shift too (nanoGPT's bias=False);
  RMSNorm has none (Llama).
  """
  if cfg.norm_kind == 'rms':
    return nn.RMSNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.compute_dtype,
                      param_dtype=cfg.params_dtype,
                      scale_init=initializers.ones('embed'), name=name)
  return nn.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.compute_dtype,
                      param_dtype=cfg.params_dtype, use_bias=cfg.use_bias,
                      scale_init=initializers.ones('embed'),
                      bias_init=initializers.zeros('embed'), name=name)
