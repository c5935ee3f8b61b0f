"""Where every task gets its batches: built-in or from files.

`config.data.source`:
  'synthetic': input_data/synthetic.py, from the seed (tests, smoke runs).
  'files': input_data/pipelines.py on local files (`config.data` fields are
    declared in configs/base_config.data_config), with the tokenizer of
    `config.tokenizer` (input_data/tokenizers.py).
"""
from collections.abc import Callable

from input_data import synthetic, text_sources, tokenizers

SOURCES = ('synthetic', 'files')


class TaskData:
  """A task's training and evaluation batches, from the seed or from files.

  make_rows(rng, count) -> dict of arrays: the task's synthetic examples.
  pipeline_fn: the task family's builder in input_data/pipelines.py.
  text_keys: example fields a tokenizer trained on the fly learns from.
  """

  def __init__(self, config, model_config, make_rows: Callable,
               pipeline_fn: Callable, text_keys: tuple[str, ...]):
    if config.data.source not in SOURCES:
      raise ValueError(f'config.data.source={config.data.source!r} is not '
                       f'one of {", ".join(SOURCES)}')
    self.config, self.model_config = config, model_config
    self.make_rows, self.pipeline_fn = make_rows, pipeline_fn
    self.text_keys = text_keys
    self._tokenizer = None
    self.eval_pipeline = None  # the last eval Batches (its examples, ...)

  @property
  def synthetic(self) -> bool:
    return self.config.data.source == 'synthetic'

  def tokenizer(self, workdir: str | None = None):
    """The run's tokenizer; one trained on the fly is saved in `workdir`
    (and reused from there on resume)."""
    if self._tokenizer is None:
      data = self.config.data

      def texts():
        for example in text_sources.load_split(data, data.train_split):
          for key in self.text_keys:
            yield example[key]

      self._tokenizer = self._checked(tokenizers.build_tokenizer(
          self._tokenizer_config(), workdir or '', texts))
    return self._tokenizer

  def run_tokenizer(self, workdir: str):
    """The tokenizer a finished run in `workdir` used (for evaluate,
    predict, export): its saved file, never one trained anew. Built-in
    data: token ids written as numbers (synthetic.IdTokenizer)."""
    if self.synthetic:
      return synthetic.IdTokenizer(self.model_config.vocab_size)
    if self._tokenizer is None:
      self._tokenizer = self._checked(tokenizers.build_tokenizer(
          self._tokenizer_config(), workdir))
    return self._tokenizer

  def _tokenizer_config(self):
    """config.tokenizer, or the one beside the init_from checkpoint."""
    return tokenizers.from_checkpoint_dir(self.config.tokenizer,
                                          self.config.init_from)

  def _checked(self, tokenizer):
    vocab = self.model_config.vocab_size
    if tokenizer.vocab_size > vocab:
      raise ValueError(f'the tokenizer has {tokenizer.vocab_size} '
                       f'tokens but config.model.vocab_size={vocab}')
    return tokenizer

  def _pipeline(self, global_batch_size, training, workdir=None):
    data = self.config.data
    return self.pipeline_fn(
        data, self.tokenizer(workdir), global_batch_size, self.config.seed,
        data.train_split if training else data.eval_split, training=training)

  def train_batches(self, workdir: str, global_batch_size: int):
    """Infinite iterator of this host's rows, with get_state/set_state."""
    if self.synthetic:
      return synthetic.SyntheticStream(self.make_rows, self.config.seed,
                                       global_batch_size)
    return iter(self._pipeline(global_batch_size, True, workdir))

  def eval_batches(self, global_batch_size: int):
    """Re-iterable eval batches (this host's rows), every example once."""
    if self.synthetic:
      return synthetic.eval_batches(self.make_rows, self.config.seed,
                                    self.config.data.num_eval_examples,
                                    global_batch_size)
    self.eval_pipeline = self._pipeline(global_batch_size, False)
    return self.eval_pipeline
