r"""Tiny encoder-decoder on a built-in task: reverse a token sequence.

Nothing is downloaded: sequences of 4 to 12 tokens over 30 symbols are
generated from the seed. Reproduce:

  python train.py --config=configs/default.py --workdir=/tmp/reverse

Hardware: 2 CPU cores (AMD EPYC, 2026-11-25). Expected: exact-match
sequence accuracy 1.000 on 1,000 held-out sequences with beam search after
the 3,000 steps (0.994 at step 2,000), in 49 s on idle cores (2 min 22 s
for `make train` with its install, sharing the cores with another run;
experiments/default.md).

Sweep (learning rate x warmup x layers, 12 trials of 1,000 steps; get_sweep):

  python sweep.py --config=configs/default.py --workdir=/tmp/reverse_sweep \
      --workers=2
"""
from configs.base_config import base_config, model_config


def get_config():
  config = base_config()
  config.model = model_config(
      vocab_size=32, d_model=64, num_heads=4, d_ff=256, num_layers=2,
      dropout_rate=0.0, max_len=32)
  config.data.source = 'synthetic'
  config.data.synthetic_task = 'reverse'     # 'reverse', 'sort' or 'copy'
  config.data.synthetic_min_len = 4
  config.data.synthetic_max_len = 12
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


def get_sweep():
  """Learning rate x warmup x layers: 12 trials of 1,000 steps, by eval loss
  (exact match saturates at 1.0 for most of the grid)."""
  return dict(
      grid={'optimizer.learning_rate': [1e-3, 3e-3, 1e-2],
            'optimizer.warmup_steps': [100, 400],
            'model.num_layers': [1, 2]},
      objective='eval/loss', direction='min',
      fixed={'num_train_steps': 1000, 'eval_every': 250,
             'checkpoint_every': 250})
