"""Layer normalisation (Ba et al. 2016) built from the model config."""
import flax.linen as nn

from models.config import ModelConfig


def layer_norm(cfg: ModelConfig, name: str) -> nn.LayerNorm:
  # flax computes the statistics in float32 even for bf16 activations.
  # use_bias=False drops the LayerNorm's shift too (nanoGPT's bias=False).
  return nn.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.compute_dtype,
                      param_dtype=cfg.params_dtype, use_bias=cfg.use_bias,
                      name=name)
