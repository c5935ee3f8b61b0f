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
from infra.tasks import synthetic

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


class TaskData:
  """A task's training and evaluation batches, from the seed or from files.

  make_rows(rng, count) -> dict of arrays: the task's synthetic examples.
  pipeline_fn: the task family's builder in infra/input_pipeline.py.
  """

  def __init__(self, config, model_config, make_rows, pipeline_fn):
    check_source(config.data)
    self.config, self.model_config = config, model_config
    self.make_rows, self.pipeline_fn = make_rows, pipeline_fn
    self._tokenizer = None

  @property
  def synthetic(self) -> bool:
    return self.config.data.source == 'synthetic'

  def tokenizer(self, workdir: str | None = None):
    if self._tokenizer is None:
      self._tokenizer = build_tokenizer(self.config, workdir,
                                        self.model_config)
    return self._tokenizer

  def _pipeline(self, global_batch_size, training, workdir=None):
    return self.pipeline_fn(
        self.config.data, self.tokenizer(workdir), global_batch_size,
        self.config.seed, split_name(self.config.data, training),
        training=training)

  def train_batches(self, workdir, global_batch_size: int, host_rows: slice):
    if self.synthetic:
      return synthetic.SyntheticStream(self.make_rows, self.config.seed,
                                       global_batch_size, host_rows)
    return iter(self._pipeline(global_batch_size, True, workdir))

  def eval_batches(self, global_batch_size: int, host_rows: slice):
    if self.synthetic:
      return synthetic.eval_batches(self.make_rows, self.config.seed,
                                    self.config.data.num_eval_examples,
                                    global_batch_size, host_rows)
    return self._pipeline(global_batch_size, False)
