"""Where the LM and BERT tasks get their batches: built-in or from files.

`config.data.source`:
  'synthetic': infra/tasks/synthetic.py, from the seed (tests, smoke runs);
    reads config.data.max_length and num_eval_examples.
  'files': infra/input_pipeline.py on text files (`config.data` fields are
    documented there; `train_split`/`eval_split` name the splits), with the
    tokenizer of `config.tokenizer` (infra/tokenizers.py).
"""
from infra import tokenizers
from infra import text_sources

SOURCES = ('synthetic', 'files')


def check_source(data_config):
  if data_config.source not in SOURCES:
    raise ValueError(f'config.data.source={data_config.source!r} is not one '
                     f'of {", ".join(SOURCES)}')


def build_tokenizer(config, workdir: str | None, model_config):
  """The run's tokenizer; one trained on the fly is saved in `workdir`."""
  data = config.data
  text_key = data.get('text_key', 'text')

  def texts():
    return [e[text_key] for e in text_sources.load_split(
        data, data.get('train_split', 'train'))]

  tokenizer = tokenizers.build_tokenizer(config.tokenizer, workdir or '',
                                         texts)
  if tokenizer.vocab_size > model_config.vocab_size:
    raise ValueError(f'the tokenizer has {tokenizer.vocab_size} tokens but '
                     f'config.model.vocab_size={model_config.vocab_size}')
  return tokenizer


def split_name(data_config, training: bool) -> str:
  if training:
    return data_config.get('train_split', 'train')
  return data_config.get('eval_split', 'validation')
