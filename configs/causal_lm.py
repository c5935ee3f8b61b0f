r"""Decoder-only language model (GPT-2 style) training.

  python train.py --config=configs/causal_lm.py --workdir=/tmp/lm
  python train.py --config=configs/causal_lm.py:data=shakespeare \
      --workdir=/tmp/shakespeare
  python train.py --config=configs/causal_lm.py:size=gpt2_small,data=... \
      --workdir=/tmp/gpt2          # 124M parameters: an accelerator

Default ('size=tiny,data=synthetic'): a 2-layer, d_model 64 LM on the
built-in progression rows (input_data/synthetic.py), on 2 CPU cores in
minutes. 'data=shakespeare': character-level tiny Shakespeare from
$DATA_DIR/tinyshakespeare (first 90% train, last 10% validation), 128
characters a row, as nanoGPT's default. No full run of either is recorded
yet; the only measured result is the 200-step sweep below.
Eval reports loss/perplexity; with decode.beam_size > 0 also the greedy
continuation accuracy of each row's second half.

Sweep (TPE over learning rate, dropout, warmup and weight decay, from the
shipped setting, median pruning; get_sweep):

  DATA_DIR=../shared/data python sweep.py \
      --config=configs/causal_lm.py:data=shakespeare \
      --workdir=/tmp/shakespeare_sweep --workers=2

Measured with --config.num_train_steps=200 on 2 shared Intel Xeon CPU
cores (23 min, experiments/sweeps.md): best validation loss 2.427 at
learning rate 9.8e-3, dropout 0.03; the shipped setting 2.603 (8th of 10).
Not yet measured at the shipped 2,000 steps.
"""
import os

from configs.base_config import base_config, model_config, parse_options
from configs.gpt2_small import gpt2_model
from errors import UserError

_SIZES = {  # num_layers, d_model
    'tiny': (2, 64),
    'small_char': (6, 384),   # nanoGPT's Shakespeare character model
    'gpt2_small': (12, 768),
    'gpt2_medium': (24, 1024),
}


def get_config(arg: str | None = None):
  options = parse_options(arg, size='tiny', data='synthetic')
  if options['size'] not in _SIZES:
    raise UserError(f"size={options['size']!r} is not one of "
                    f'{", ".join(_SIZES)}')
  config = base_config()
  config.task = 'causal_lm'             # tasks/ registry name
  model = gpt2_model(*_SIZES[options['size']])
  if options['data'] == 'synthetic':
    model.update(vocab_size=64, max_len=32, dropout_rate=0.0,
                 attention_dropout_rate=0.0)
    config.data.source = 'synthetic'
    config.data.max_length = 32
    config.data.num_eval_examples = 256
  elif options['data'] == 'shakespeare':
    model.update(vocab_size=72, max_len=128, dropout_rate=0.2,
                 attention_dropout_rate=0.2)
    config.data.source = 'files'
    config.data.data_dir = os.environ.get('DATA_DIR', '')  # shared/data
    config.data.format = 'text'
    config.data.file_pattern = 'tinyshakespeare/input.txt'
    config.data.split_fractions = {'train': (0.0, 0.9),
                                   'validation': (0.9, 1.0)}
    config.data.max_length = 128
    config.data.packing = False
    config.data.train_split = 'train'
    config.data.eval_split = 'validation'
    config.tokenizer.update(kind='char')
  else:
    raise UserError(f"data={options['data']!r} is not synthetic or "
                    'shakespeare')
  config.model = model_config(**model)
  config.batch_size = 64
  config.eval_batch_size = 64
  config.num_train_steps = 2000
  config.label_smoothing = 0.0
  config.optimizer.name = 'adamw'
  config.optimizer.schedule = 'cosine'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 100
  config.optimizer.b2 = 0.99
  config.optimizer.weight_decay = 0.1
  config.decode.beam_size = 0           # > 0: greedy continuation accuracy
  config.log_every = 100
  config.eval_every = 1000
  config.checkpoint_every = 1000
  return config


def get_sweep(arg: str | None = None):
  """TPE by validation loss over 12 trials; the shipped setting is the
  first trial."""
  config = get_config(arg)
  shipped = {'optimizer.learning_rate': config.optimizer.learning_rate,
             'model.dropout_rate': config.model.dropout_rate,
             'optimizer.warmup_steps': config.optimizer.warmup_steps,
             'optimizer.weight_decay': config.optimizer.weight_decay}
  return dict(
      settings=[shipped],
      ranges={'optimizer.learning_rate': ('loguniform', 3e-4, 1e-2),
              'model.dropout_rate': ('uniform', 0.0, 0.3),
              'optimizer.warmup_steps': ('int', 0, 400),
              'optimizer.weight_decay': ('loguniform', 1e-3, 0.3)},
      objective='eval/loss', direction='min',
      sampler='tpe', sampler_args={'n_startup_trials': 5},
      pruner='median', pruner_args={'n_startup_trials': 3},
      budget=12)
