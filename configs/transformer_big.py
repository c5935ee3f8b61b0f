"""Transformer (big) of Vaswani et al. 2017, Table 3: 213M parameters.

N=6, d_model=1024, d_ff=4096, h=16, P_drop=0.3 (0.1 for EN-FR), shared
37,000-token vocabulary, post-LN, sinusoidal positions. Exact parameter
count: 214,245,376 (tests/test_configs.py). Trained 300k steps in the paper.
"""
from configs import transformer_base


def get_config():
  config = transformer_base.get_config()
  config.model.d_model = 1024
  config.model.d_ff = 4096
  config.model.num_heads = 16
  config.model.dropout_rate = 0.3
  config.num_train_steps = 300000
  config.optimizer.learning_rate = 1024 ** -0.5 * 4000 ** -0.5
  return config
