r"""Multi30k task 1 (image captions), English -> German, test_2016_flickr.

  python train.py --config=configs/multi30k_en_de.py --workdir=/tmp/m30k \
      --config.data.data_dir=/path/to/multi30k

`config.data.data_dir` defaults to $DATA_DIR/multi30k ({split}.{en,de}.gz
files; in this repository's CI, ../shared/data/multi30k). A joint 8,000-piece
SentencePiece model is trained on the training captions into the workdir.
The model is the 4+4-layer, d_model 128 Transformer the literature reports
41.0 lowercased tokenized BLEU for (Wu et al. 2021, fairseq
transformer_tiny-sized, 8k updates of 4,096 tokens, beam 5, last 10
checkpoints averaged). Evaluation decodes test_2016_flickr with beam 5 and
reports cased detokenized sacreBLEU ('bleu') and lowercased 13a-tokenized
BLEU ('bleu_lowercase_tokenized'); the last `average_last_checkpoints`
checkpoints are averaged at the end ('averaged/' metrics). No checkpoint is
chosen by its test score. Variants: get_config('steps=N') shortens the run
(CPU budgets). Measured (experiments/multi30k.md) on 2 AMD EPYC cores
(2026-11-25): `:steps=5500`, 51 minutes, 38.56 cased sacreBLEU / 38.96
lowercased tokenized BLEU; `:steps=7000 --config.grad_accum_steps=4`, 53
minutes, 39.67 / 40.04 (10-checkpoint mean).

Sweep (TPE over learning rate, dropout, label smoothing and warmup, 16
trials from the shipped setting, median pruning; get_sweep):

  python sweep.py --config=configs/multi30k_en_de.py:steps=2000 \
      --workdir=/tmp/m30k_sweep --workers=2
"""
import os

from configs.base_config import base_config, model_config, parse_options


def get_config(arg: str | None = None):
  options = parse_options(arg, steps='8000')
  config = base_config()
  config.task = 'seq2seq'
  config.model = model_config(
      vocab_size=8000, d_model=128, num_heads=4, d_ff=512, num_layers=4,
      dropout_rate=0.3, attention_dropout_rate=0.1,
      activation_dropout_rate=0.1, max_len=128,
      # 8 random bits per dropout decision (rates 77/256, 26/256): a fifth
      # of the CPU step was threefry bits at 32 (models/dropout.py).
      dropout_bits=8)

  config.data.source = 'files'
  config.data.data_dir = os.path.join(os.environ.get('DATA_DIR', 'data'),
                                      'multi30k')
  config.data.format = 'parallel'
  config.data.inputs_pattern = '{split}.en.gz'
  config.data.targets_pattern = '{split}.de.gz'
  config.data.train_split = 'train'
  config.data.eval_split = 'test_2016_flickr'
  config.data.max_input_length = 64
  config.data.max_target_length = 64
  config.data.packing = True       # ~4 captions per row: little padding
  config.data.overlong = 'truncate'
  config.data.eval_length_buckets = [16, 24, 32, 48, 64]
  config.tokenizer.update(kind='sentencepiece', vocab_size=8000,
                          model_type='unigram', character_coverage=1.0)

  # 64 packed rows of 64 tokens: ~3,900 target tokens a step, about the
  # 4,096 of the reference.
  config.batch_size = 64
  config.eval_batch_size = 100
  config.num_train_steps = int(options['steps'])
  config.label_smoothing = 0.1
  # Output layer + loss fused over chunks of 16 positions: the [4096, 8000]
  # logits are never stored (training/losses.py); faster on CPU
  # (experiments/performance.md, section 2).
  config.loss_chunk_length = 16
  config.optimizer.name = 'adam'
  config.optimizer.schedule = 'rsqrt'
  config.optimizer.learning_rate = 2e-3
  config.optimizer.warmup_steps = min(1000, config.num_train_steps // 8)
  config.decode.beam_size = 5
  config.decode.alpha = 0.6
  config.decode.max_decode_len = 64
  config.log_every = 50
  config.eval_every = config.num_train_steps // 4
  config.checkpoint_every = max(config.num_train_steps // 40, 1)
  config.keep_checkpoints = 10
  config.average_last_checkpoints = 10
  return config


def get_sweep(arg: str | None = None):
  """TPE over the regularisation and schedule, by BLEU at the last eval;
  the shipped setting is the first trial."""
  config = get_config(arg)
  steps = config.num_train_steps
  return dict(
      settings=[{'optimizer.learning_rate': config.optimizer.learning_rate,
                 'model.dropout_rate': config.model.dropout_rate,
                 'label_smoothing': config.label_smoothing,
                 'optimizer.warmup_steps': config.optimizer.warmup_steps}],
      ranges={'optimizer.learning_rate': ('loguniform', 5e-4, 5e-3),
              'model.dropout_rate': ('uniform', 0.1, 0.4),
              'label_smoothing': ('uniform', 0.0, 0.2),
              'optimizer.warmup_steps': ('int', steps // 16, steps // 4)},
      objective='eval/bleu', direction='max',
      sampler='tpe', sampler_args={'n_startup_trials': 6},
      pruner='median', pruner_args={'n_startup_trials': 4},
      budget=16)
