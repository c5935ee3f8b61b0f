r"""Abstractive summarization (document -> one-sentence summary), XSum-style.

  python train.py --config=configs/xsum_summarization.py --workdir=/tmp/xsum \
      --config.data.data_dir=/path/to/xsum

The same encoder-decoder path as translation, on JSON-lines files with
`document` and `summary` fields, scored with ROUGE-1/2/L (and sacreBLEU).
`config.data.data_dir` defaults to $DATA_DIR/xsum-sample, whose 10 pairs
(`sample.jsonl`, used as both splits) only show the pipeline working end to
end: a real run needs the full XSum (Narayan et al. 2018) as
{train,validation}.jsonl and many more steps. No measured result recorded.
"""
import os

from configs.base_config import base_config, model_config


def get_config():
  config = base_config()
  config.task = 'seq2seq'
  config.model = model_config(
      vocab_size=2000, d_model=128, num_heads=4, d_ff=512, num_layers=2,
      dropout_rate=0.1, max_len=512)
  config.data.source = 'files'
  config.data.data_dir = os.path.join(os.environ.get('DATA_DIR', 'data'),
                                      'xsum-sample')
  config.data.format = 'jsonl'
  config.data.file_pattern = 'sample.jsonl'  # '{split}.jsonl' for full XSum
  config.data.inputs_key = 'document'
  config.data.targets_key = 'summary'
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.data.max_input_length = 512
  config.data.max_target_length = 64
  config.data.packing = False
  config.data.overlong = 'truncate'    # long articles keep their beginning
  config.data.rouge = True
  config.tokenizer.update(kind='sentencepiece', vocab_size=2000,
                          model_type='unigram', character_coverage=1.0)
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_train_steps = 200
  config.label_smoothing = 0.1
  config.optimizer.schedule = 'rsqrt'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 50
  config.decode.beam_size = 4
  config.decode.alpha = 0.6
  config.decode.max_decode_len = 64
  config.log_every = 20
  config.eval_every = 200
  config.checkpoint_every = 200
  return config
