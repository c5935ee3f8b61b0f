"""Position-wise feed-forward block, dense or gated.

dense: FFN(x) = act(x W1 + b1) W2 + b2 (parameters 'wi', 'wo').
gated: FFN(x) = (act(x W1) * x W3) W2 (Shazeer 2020; 'w1' gate, 'w3' up,
'w2' down, as Llama): SwiGLU with silu, GeGLU with gelu.
"""
import jax
import flax.linen as nn

from models.dense import Dense
from models import initializers
from models.config import ModelConfig
from models.dropout import dropout_for
from models.logical_axes import constrain

ACTIVATIONS = {
    'relu': jax.nn.relu,
    'gelu': lambda x: jax.nn.gelu(x, approximate=False),  # BERT
    'gelu_tanh': lambda x: jax.nn.gelu(x, approximate=True),  # GPT-2
    'silu': jax.nn.silu,
}
# The residual branch's last projection (scaled init, initializers.kernel).
_OUTPUT = {'dense': 'wo', 'gated': 'w2'}


class FeedForward(nn.Module):
  """[b, l, d_model] -> [b, l, d_model], applied to each position alone."""
  config: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x):
    cfg = self.config
    output = _OUTPUT[cfg.ffn_kind]
    def dense(name, features, axes):
      return Dense(
          features, use_bias=cfg.use_bias, dtype=cfg.compute_dtype,
          param_dtype=cfg.params_dtype, name=name,
          kernel_init=initializers.kernel(cfg, axes,
                                          residual_output=name == output),
          bias_init=initializers.zeros(axes[1]),
          fast_dots=cfg.fast_paths.dense_dots)
    up = lambda name: constrain(dense(name, cfg.d_ff, ('embed', 'mlp'))(x),
                                'batch', 'length', 'mlp')
    act = ACTIVATIONS[cfg.activation]
    if cfg.ffn_kind == 'gated':
      h = act(up('w1')) * up('w3')
    else:
      h = act(up('wi'))
    h = dropout_for(cfg, cfg.activation_dropout_rate)(h, self.deterministic)
    return constrain(dense(output, cfg.d_model, ('mlp', 'embed'))(h),
                     'batch', 'length', 'embed')
