"""Parameter initialisers chosen by `ModelConfig.init_std`."""
import flax.linen as nn

from models.config import ModelConfig


def kernel(cfg: ModelConfig, residual_output: bool = False):
  """Dense kernels: Xavier-uniform (the paper's codebase) or N(0, init_std).

  residual_output: the last projection of a residual branch (attention
  'out', feed-forward 'wo'). With `cfg.scale_residual_init` its variance is
  divided by the number of residual branches, 2 per layer, as GPT-2 does
  (std 0.02 / sqrt(2 * n_layer)), so the residual stream's variance at
  initialisation does not grow with depth.
  """
  scale = 1.0
  if residual_output and cfg.scale_residual_init:
    scale = 1.0 / (2 * max(cfg.num_layers, cfg.decoder_layers))
  if cfg.init_std > 0:
    return nn.initializers.normal(stddev=cfg.init_std * scale ** 0.5)
  return nn.initializers.variance_scaling(scale, 'fan_avg', 'uniform')


def embedding(cfg: ModelConfig):
  """Embeddings: N(0, d_model^-1/2), so scaled-up tied embeddings start at
  unit variance; or N(0, init_std) as in BERT and GPT-2."""
  return nn.initializers.normal(stddev=cfg.init_std or cfg.d_model ** -0.5)
