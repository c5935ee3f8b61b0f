"""Transformer (base) of Vaswani et al. 2017, Table 3: 65M parameters.

N=6, d_model=512, d_ff=2048, h=8, P_drop=0.1, eps_ls=0.1, shared 37,000-token
source/target vocabulary tied to the output projection, post-LN, sinusoidal
positions. Exact parameter count: 63,082,496 (tests/test_configs.py).
The data source is configurable (e.g. --config.data.source=...); the paper
trained 100k steps of ~25k source + 25k target tokens on 8 P100 GPUs.
"""
from configs.base_config import base_config, model_config


def get_config():
  config = base_config()
  config.model = model_config(
      vocab_size=37000, d_model=512, num_heads=8, d_ff=2048, num_layers=6,
      dropout_rate=0.1, max_len=256)
  config.data.source = 'synthetic'
  config.data.synthetic_task = 'reverse'
  config.data.synthetic_min_len = 8
  config.data.synthetic_max_len = 64
  config.data.num_eval_examples = 256
  config.num_train_steps = 100000
  config.optimizer.learning_rate = 512 ** -0.5 * 4000 ** -0.5  # eq. 3 peak
  config.optimizer.warmup_steps = 4000
  return config
