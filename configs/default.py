"""Tiny encoder-decoder on a built-in task: reverse a token sequence.

Nothing is downloaded: sequences of 4 to 12 tokens over 30 symbols are
generated from the seed. Reproduce:

  python train.py --config=configs/default.py --workdir=/tmp/reverse

Hardware: 2 CPU cores. Expected: about 3 minutes, ending with exact-match
sequence accuracy >= 0.99 on 1,000 held-out sequences with beam search
(measured figures in experiments/default.md).
"""
from configs.base_config import base_config, model_config


def get_config():
  config = base_config()
  config.model = model_config(
      vocab_size=32, d_model=64, num_heads=4, d_ff=256, num_layers=2,
      dropout_rate=0.0, max_len=32)
  config.data.source = 'synthetic'
  config.data.task = 'reverse'     # 'reverse', 'sort' or 'copy'
  config.data.min_len = 4
  config.data.max_len = 12
  config.data.num_eval_examples = 1000

  config.batch_size = 64
  config.num_train_steps = 3000
  config.optimizer.schedule = 'cosine'
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 3e-3
  config.optimizer.warmup_steps = 200
  config.label_smoothing = 0.0
  config.log_every = 100
  config.eval_every = 1000
  config.checkpoint_every = 1000
  return config
