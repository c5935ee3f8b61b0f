"""Position-wise feed-forward block: FFN(x) = act(x W1 + b1) W2 + b2."""
import jax
import flax.linen as nn

from models import fast_dots
from models import initializers
from models.config import ModelConfig
from models.dropout import Dropout

ACTIVATIONS = {
    'relu': jax.nn.relu,
    'gelu': lambda x: jax.nn.gelu(x, approximate=False),  # BERT
    'gelu_tanh': lambda x: jax.nn.gelu(x, approximate=True),  # GPT-2
    'silu': jax.nn.silu,
}


class FeedForward(nn.Module):
  """[b, l, d_model] -> [b, l, d_model], applied to each position alone."""
  config: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x):
    cfg = self.config
    dense = lambda name, features: nn.Dense(
        features, use_bias=cfg.use_bias, dtype=cfg.compute_dtype,
        param_dtype=cfg.params_dtype, name=name,
        kernel_init=initializers.kernel(cfg, residual_output=name == 'wo'),
        dot_general=fast_dots.dense_dot_general_for(cfg))
    h = ACTIVATIONS[cfg.activation](dense('wi', cfg.d_ff)(x))
    h = Dropout(cfg.activation_dropout_rate, cfg.dropout_bits)(
        h, self.deterministic)
    return dense('wo', cfg.d_model)(h)
