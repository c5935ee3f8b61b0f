"""Parameter initialisers chosen by `ModelConfig.init_std`."""
import flax.linen as nn

from models.config import ModelConfig


def kernel(cfg: ModelConfig):
  """Dense kernels: Xavier-uniform (the paper's codebase) or N(0, init_std)."""
  if cfg.init_std > 0:
    return nn.initializers.normal(stddev=cfg.init_std)
  return nn.initializers.xavier_uniform()


def embedding(cfg: ModelConfig):
  """Embeddings: N(0, d_model^-1/2), so scaled-up tied embeddings start at
  unit variance; or N(0, init_std) as in BERT and GPT-2."""
  return nn.initializers.normal(stddev=cfg.init_std or cfg.d_model ** -0.5)
