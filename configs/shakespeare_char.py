r"""Character-level tiny Shakespeare with nanoGPT's settings (Karpathy 2022).

  DATA_DIR=../shared/data python train.py \
      --config=configs/shakespeare_char.py:cpu --workdir=workdirs/shakespeare_cpu
  DATA_DIR=../shared/data python train.py \
      --config=configs/shakespeare_char.py:gpu --workdir=workdirs/shakespeare_gpu

Data: $DATA_DIR/tinyshakespeare/input.txt, the first 90% of the characters
for training and the last 10% for validation, as nanoGPT's prepare.py.
Variants, each nanoGPT's config/train_shakespeare_char.py:
  cpu: its README's CPU command (4 layers, 4 heads, width 128, block 64,
    batch 12, 2,000 iterations, lr 1e-3 cosine to 1e-4, no dropout);
    nanoGPT reports validation loss 1.88.
  gpu: the file itself (6 layers, 6 heads, width 384, block 256, batch 64,
    dropout 0.2, 5,000 iterations); nanoGPT reports 1.4697.
Both: AdamW (b2 0.99, weight decay 0.1 on matrices only), 100 warmup
steps, gradient clipping at 1.0, no biases, pre-LN GPT-2 blocks with
learned positions, rows starting at random characters. Evaluation is the
loss over the whole validation split (nanoGPT averages 20 or 200 random
batches). Measured (experiments/shakespeare.md): cpu, 1.888 after 2,000
steps in 10 min 15 s on 2 Intel Xeon cores under load; gpu, best 1.4632 at
step 1,500 (nanoGPT's 1.4697 is also its best) on an NVIDIA H200, 4,601
steps in 174 s, over-fitting after step 2,000 as nanoGPT's run does.
"""
import os

from configs.base_config import base_config, model_config, parse_options
from configs.gpt2_small import gpt2_model
from errors import UserError

# num_layers, d_model (heads: d_model // 32 for cpu, // 64 for gpu),
# block size, batch, iterations, dropout
_VARIANTS = {
    'cpu': dict(layers=4, width=128, heads=4, block=64, batch=12,
                steps=2000, dropout=0.0),
    'gpu': dict(layers=6, width=384, heads=6, block=256, batch=64,
                steps=5000, dropout=0.2),
}


def get_config(arg: str | None = 'cpu'):
  variant = (arg or 'cpu').split(',')[0]
  if variant not in _VARIANTS:
    raise UserError(f'variant {variant!r} is not one of '
                    f'{", ".join(_VARIANTS)}')
  parse_options(','.join((arg or '').split(',')[1:]))  # no other options
  v = _VARIANTS[variant]
  config = base_config()
  config.task = 'causal_lm'
  model = gpt2_model(v['layers'], v['width'])
  model.update(
      vocab_size=72,           # 65 characters + PAD/EOS/UNK, padded to 8
      num_heads=v['heads'], d_ff=4 * v['width'], max_len=v['block'],
      dropout_rate=v['dropout'], attention_dropout_rate=v['dropout'],
      use_bias=False,          # nanoGPT's bias=False (LayerNorms too)
      activation='gelu',       # nn.GELU(): exact, not GPT-2's tanh form
      scale_residual_init=True)
  config.model = model_config(**model)

  config.data.source = 'files'
  config.data.data_dir = os.environ.get('DATA_DIR', '')  # shared/data
  config.data.format = 'text'
  config.data.file_pattern = 'tinyshakespeare/input.txt'
  config.data.split_fractions = {'train': (0.0, 0.9),
                                 'validation': (0.9, 1.0)}
  config.data.max_length = v['block']
  config.data.random_offsets = True
  config.tokenizer.kind = 'char'

  config.batch_size = v['batch']
  config.eval_batch_size = 64
  config.num_train_steps = v['steps']
  config.label_smoothing = 0.0
  config.optimizer.name = 'adamw'
  config.optimizer.schedule = 'cosine'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.end_learning_rate = 1e-4
  config.optimizer.warmup_steps = 100
  config.optimizer.b2 = 0.99
  config.optimizer.eps = 1e-8
  config.optimizer.weight_decay = 0.1
  config.optimizer.decay_only_matrices = True
  config.optimizer.grad_clip_norm = 1.0
  config.decode.beam_size = 0      # eval: loss and perplexity only
  config.decode.start_text = '\n'  # nanoGPT's sample.py starts there too
  config.num_devices = 1           # batch 12 does not split over 8 devices
  config.log_every = 100
  config.eval_every = 250 if variant == 'cpu' else 500
  config.checkpoint_every = 500
  return config
