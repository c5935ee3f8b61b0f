"""Where every task gets its batches: built-in or from files.

`config.data.source`:
  'synthetic': input_data/synthetic.py, from the seed (tests, smoke runs).
  'files': input_data/pipelines.py on local files (`config.data` fields are
    declared in configs/base_config.data_config), with the tokenizer of
    `config.tokenizer` (input_data/tokenizers.py).
"""
from collections.abc import Callable
import os

import ml_collections

from errors import UserError
from input_data import synthetic, text_sources, tokenizers

SOURCES = ('synthetic', 'files')
# Case, digits, punctuation and word pieces: two tokenizers that encode
# this alike, with vocabularies of one size, are taken to be one.
TOKENIZER_PROBE = ('The 3 quick-brown foxes JUMPED over 2,048 lazy dogs; '
                   "unbelievably, the naive cafe owner didn't mind.")


def reads_builtin_data(config) -> bool:
  """Built-in rows from the seed (config.data.source='synthetic') rather
  than files: the one test of the source, which tasks make once."""
  return config.data.source == 'synthetic'


class TaskData:
  """A task's training and evaluation batches, from the seed or from files.

  make_rows(rng, count) -> dict of arrays: the task's synthetic examples.
  pipeline_fn: the task family's builder in input_data/pipelines.py.
  text_keys: example fields a tokenizer trained on the fly learns from.
  """

  def __init__(self, config, model_config, make_rows: Callable,
               pipeline_fn: Callable, text_keys: tuple[str, ...]):
    if config.data.source not in SOURCES:
      raise UserError(f'config.data.source={config.data.source!r} is not '
                      f'one of {", ".join(SOURCES)}')
    self.config, self.model_config = config, model_config
    self.synthetic = reads_builtin_data(config)
    self.make_rows, self.pipeline_fn = make_rows, pipeline_fn
    self.text_keys = text_keys
    self._tokenizer = None
    self.eval_pipeline = None  # the last eval Batches (its examples, ...)

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

  def check_same_tokenizer(self, path: str, saved: dict, workdir: str):
    """One line if the run in workdir `path` (`saved`: its flattened
    config) read its text with another tokenizer than this run: its
    embedding rows would mean other tokens, and fine-tuning would start from
    scrambled inputs. Skipped where a side has no text tokenizer to compare:
    built-in token ids, or one this run will train on the fly."""
    if self.synthetic or saved.get('data.source', 'synthetic') == 'synthetic':
      return
    ours_config = self._tokenizer_config()
    if not os.path.exists(tokenizers.tokenizer_file(ours_config, workdir)):
      return
    theirs_config = ml_collections.ConfigDict({
        k.split('.', 1)[1]: v for k, v in saved.items()
        if k.startswith('tokenizer.')})
    theirs = tokenizers.build_tokenizer(theirs_config, path)
    ours = tokenizers.build_tokenizer(ours_config, workdir)
    if (theirs.vocab_size != ours.vocab_size or
        theirs.encode(TOKENIZER_PROBE) != ours.encode(TOKENIZER_PROBE)):
      describe = lambda c, t, folder: (
          f'{c.kind} {tokenizers.tokenizer_file(c, folder)} of '
          f'{t.vocab_size} tokens')
      raise UserError(
          f'config.init_from={path} was trained with another tokenizer '
          f'({describe(theirs_config, theirs, path)}) than config.tokenizer '
          f'({describe(ours_config, ours, workdir)}): set config.tokenizer '
          'to the pre-training run\'s')

  def _checked(self, tokenizer):
    vocab = self.model_config.vocab_size
    if tokenizer.vocab_size > vocab:
      raise UserError(f'the tokenizer has {tokenizer.vocab_size} '
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
