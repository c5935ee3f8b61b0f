"""Tokenizers behind one small interface, and `build_tokenizer` from a config.

Every tokenizer exposes `encode(text) -> list[int]` (no special tokens added:
the input pipeline adds EOS / [CLS] / [SEP] itself), `decode(ids) -> str`
(stops at EOS, drops PAD and other special tokens), `vocab_size`, `pad_id`,
`eos_id`; BERT-style vocabularies also give `cls_id`, `sep_id`, `mask_id`
(None elsewhere). `encode_with_offsets` returns per-token character spans,
which extractive QA needs to map a predicted span back to the context.
`save_for_transformers` writes a run's tokenizer as Hugging Face files.

Tokenizers we train ourselves follow the fixed convention PAD=0, EOS=1, UNK=2
and no BOS: encoder-decoder decoders start from PAD (shift right).

Config fields read by `build_tokenizer` (`config.tokenizer`; declared with
their defaults in configs/base_config.tokenizer_config):
  kind: 'sentencepiece' (train on the training text, or load `path` when set),
    'hf_json' (a Hugging Face `tokenizer.json` at `path`), 'wordpiece' (a BERT
    `vocab.txt` at `path`) or 'char' (one id per character of the training
    text, for character-level LMs).
  path: file to load; for 'sentencepiece' an existing `.model` (if empty, a
    model is trained into `<workdir>/spm.model`, or reused if already there,
    so a resumed run gets the identical tokenizer).
  vocab_size: SentencePiece vocabulary size to train.
  model_type: 'unigram' or 'bpe' (SentencePiece training).
  character_coverage: SentencePiece training (1.0 for small alphabets,
    0.9995 for large ones).
  max_training_sentences: how many sentences SentencePiece trains on.
  byte_fallback: SentencePiece: spell characters unseen in training as UTF-8
    byte pieces instead of UNK (costs 256 vocabulary entries), so any text
    decodes back exactly.
  lowercase: 'wordpiece' only: lowercase and strip accents (uncased BERT).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import ml_collections

from errors import UserError

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2


class Tokenizer(Protocol):
  """What the input pipeline, decoding and metrics rely on."""
  vocab_size: int
  pad_id: int
  eos_id: int
  cls_id: int | None
  sep_id: int | None
  mask_id: int | None

  def encode(self, text: str) -> list[int]: ...

  def decode(self, ids: Iterable[int]) -> str: ...

  def encode_with_offsets(
      self, text: str) -> tuple[list[int], list[tuple[int, int]]]: ...


def _until_eos(ids: Iterable[int], eos_id: int, skip: set[int]) -> list[int]:
  """Ids up to (not including) the first EOS, without PAD/special ids."""
  out = []
  for i in ids:
    i = int(i)
    if i == eos_id:
      break
    if i not in skip:
      out.append(i)
  return out


class SentencePieceTokenizer:
  """A SentencePiece model with PAD=0, EOS=1, UNK=2 (ids checked on load)."""
  cls_id = sep_id = mask_id = None

  def __init__(self, model_path: str):
    import sentencepiece as spm  # pylint: disable=g-import-not-at-top
    self.path = model_path
    self._sp = spm.SentencePieceProcessor(model_file=model_path)
    self.vocab_size = self._sp.get_piece_size()
    self.pad_id, self.eos_id = self._sp.pad_id(), self._sp.eos_id()
    if (self.pad_id, self.eos_id) != (PAD_ID, EOS_ID):
      raise UserError(
          f'{model_path}: expected pad_id=0, eos_id=1, got pad_id='
          f'{self.pad_id}, eos_id={self.eos_id}')

  def encode(self, text: str) -> list[int]:
    return self._sp.encode(text)

  def decode(self, ids: Iterable[int]) -> str:
    return self._sp.decode(_until_eos(ids, self.eos_id, {self.pad_id}))

  def encode_with_offsets(self, text):
    proto = self._sp.encode(text, return_type='proto')
    # SentencePiece offsets count UTF-8 bytes; map them to characters.
    char_at = [0] * (len(text.encode('utf-8')) + 1)
    pos = 0
    for i, ch in enumerate(text):
      n = len(ch.encode('utf-8'))
      char_at[pos:pos + n] = [i] * n
      pos += n
    char_at[pos] = len(text)
    return ([p.id for p in proto.pieces],
            [(char_at[p.begin], char_at[p.end]) for p in proto.pieces])


def train_sentencepiece(texts: Iterable[str], model_path: str, *,
                        vocab_size: int, model_type: str = 'unigram',
                        character_coverage: float = 1.0,
                        max_sentences: int = 1_000_000,
                        byte_fallback: bool = False) -> str:
  """Trains a SentencePiece model on `texts` and writes it to `model_path`.

  The file is written to a temporary name and renamed, so a crash never
  leaves a half-written model that a resumed run would then reuse.
  """
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  spm.set_random_generator_seed(0)  # Sentence sampling is then reproducible.

  def sentences():
    for n, text in enumerate(texts):
      if n >= max_sentences:
        return
      if text.strip():
        yield text

  os.makedirs(os.path.dirname(os.path.abspath(model_path)), exist_ok=True)
  with tempfile.TemporaryDirectory(
      dir=os.path.dirname(os.path.abspath(model_path))) as tmp:
    prefix = os.path.join(tmp, 'spm')
    spm.SentencePieceTrainer.train(
        sentence_iterator=sentences(), model_prefix=prefix,
        vocab_size=vocab_size, model_type=model_type,
        character_coverage=character_coverage,
        pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
        input_sentence_size=max_sentences, shuffle_input_sentence=True,
        byte_fallback=byte_fallback,
        # Keep spaces/newlines as seen: detokenised BLEU needs exact text.
        normalization_rule_name='identity', minloglevel=2)
    os.replace(prefix + '.model', model_path)
  return model_path


class HuggingFaceTokenizer:
  """A `tokenizers.Tokenizer`: a `tokenizer.json` or a WordPiece `vocab.txt`.

  BERT vocabularies have no EOS; `eos_id` is [SEP], which ends a sequence.
  """

  def __init__(self, tok):
    self._tok = tok
    # Files exported for inference often carry fixed truncation/padding.
    tok.no_truncation()
    tok.no_padding()
    self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
    find = tok.token_to_id
    first = lambda *names: next(
        (find(n) for n in names if find(n) is not None), None)
    self.pad_id = first('[PAD]', '<pad>', '<|pad|>')
    self.cls_id = first('[CLS]')
    self.sep_id = first('[SEP]')
    self.mask_id = first('[MASK]', '<mask>')
    self.eos_id = first('</s>', '<|endoftext|>', '<eos>', '[SEP]')
    self._special = {i for i in (self.pad_id, self.cls_id, self.sep_id,
                                 self.mask_id) if i is not None}
    if self.pad_id is None:
      # No pad token (GPT-2): batches still pad with 0, masked by weights;
      # id 0 is a real token there, so decode must not drop it.
      self.pad_id = 0

  @classmethod
  def from_json(cls, path: str) -> 'HuggingFaceTokenizer':
    from tokenizers import Tokenizer as HfTokenizer  # pylint: disable=g-import-not-at-top
    return cls(HfTokenizer.from_file(path))

  @classmethod
  def from_wordpiece_vocab(cls, path: str,
                           lowercase: bool = True) -> 'HuggingFaceTokenizer':
    from tokenizers import BertWordPieceTokenizer  # pylint: disable=g-import-not-at-top
    wp = BertWordPieceTokenizer(path, lowercase=lowercase,
                                strip_accents=lowercase)
    return cls(wp._tokenizer)  # pylint: disable=protected-access

  def encode(self, text: str) -> list[int]:
    return self._tok.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """Faster than a loop over `encode` (Rust, parallel)."""
    return [e.ids for e in self._tok.encode_batch(
        list(texts), add_special_tokens=False)]

  def decode(self, ids: Iterable[int]) -> str:
    return self._tok.decode(_until_eos(ids, self.eos_id, self._special),
                            skip_special_tokens=True)

  def encode_with_offsets(self, text):
    enc = self._tok.encode(text, add_special_tokens=False)
    return enc.ids, [tuple(o) for o in enc.offsets]

  def token(self, i: int) -> str:
    return self._tok.id_to_token(i)


class CharTokenizer:
  """One id per character seen in training text; PAD=0, EOS=1, UNK=2."""
  cls_id = sep_id = mask_id = None
  pad_id, eos_id = PAD_ID, EOS_ID

  def __init__(self, chars: str):
    self.chars = chars
    self._ids = {c: i + 3 for i, c in enumerate(chars)}
    self.vocab_size = len(chars) + 3

  def encode(self, text: str) -> list[int]:
    return [self._ids.get(c, UNK_ID) for c in text]

  def decode(self, ids: Iterable[int]) -> str:
    # Ids past the characters (a model vocabulary rounded up) never come
    # from text; sampling can still draw them.
    return ''.join(self.chars[i - 3] if 3 <= i < self.vocab_size
                   else '\ufffd' for i in _until_eos(ids, EOS_ID, {PAD_ID}))

  def encode_with_offsets(self, text):
    return self.encode(text), [(i, i + 1) for i in range(len(text))]


def from_checkpoint_dir(tokenizer_config: ml_collections.ConfigDict,
                        checkpoint_dir: str) -> ml_collections.ConfigDict:
  """`tokenizer_config`, or the tokenizer saved beside a pre-trained
  checkpoint (a Hugging Face directory: tokenizer.json, else vocab.txt), so
  fine-tuning reads text exactly as the checkpoint was trained to."""
  if not checkpoint_dir or not os.path.isdir(checkpoint_dir):
    return tokenizer_config
  for name, kind in (('tokenizer.json', 'hf_json'), ('vocab.txt',
                                                      'wordpiece')):
    path = os.path.join(checkpoint_dir, name)
    if os.path.exists(path):
      config = tokenizer_config.copy_and_resolve_references()
      with config.unlocked():
        config.update(kind=kind, path=path)
      return config
  return tokenizer_config


# Files a tokenizer trained on the fly is saved to, in the workdir.
TRAINED_FILES = {'sentencepiece': 'spm.model', 'char': 'chars.txt'}


def tokenizer_file(tokenizer_config: ml_collections.ConfigDict,
                   workdir: str) -> str:
  """The file `build_tokenizer` loads: `path`, or the one a run trained into
  its workdir (which may not exist yet)."""
  cfg = tokenizer_config
  if cfg.path or cfg.kind not in TRAINED_FILES:
    return cfg.path
  return os.path.join(workdir, TRAINED_FILES[cfg.kind])


def build_tokenizer(tokenizer_config: ml_collections.ConfigDict, workdir: str,
                    training_texts_fn: Callable[[], Iterable[str]] | None = None
                    ) -> Tokenizer:
  """Builds the tokenizer `config.tokenizer` describes (fields: module doc).

  Args:
    tokenizer_config: the `config.tokenizer` ConfigDict.
    workdir: run directory; trained models are saved there and reused.
    training_texts_fn: returns an iterable of training sentences; called only
      when a model must be trained (SentencePiece without a saved model, or
      the character vocabulary). None: a missing file is an error.
  """
  cfg = tokenizer_config
  kind = cfg.kind
  if kind not in ('sentencepiece', 'hf_json', 'wordpiece', 'char'):
    raise UserError(f'config.tokenizer.kind: unknown kind {kind!r}; expected '
                    "'sentencepiece', 'hf_json', 'wordpiece' or 'char'")
  path = tokenizer_file(cfg, workdir)
  # A SentencePiece `path` must exist; a character vocabulary is built there.
  trainable = kind == 'char' or (kind == 'sentencepiece' and not cfg.path)
  if trainable and not os.path.exists(path):
    if not workdir:  # never into the current directory
      raise UserError(f'config.tokenizer: a {kind} tokenizer is trained into'
                      " the run's workdir, and none was given")
    if training_texts_fn is None:
      raise UserError(f'config.tokenizer: {path} does not exist and there '
                      f'is no training text to build a {kind} tokenizer')
    _train(cfg, path, training_texts_fn)
  if kind == 'sentencepiece':
    return SentencePieceTokenizer(path)
  if kind == 'hf_json':
    return HuggingFaceTokenizer.from_json(path)
  if kind == 'wordpiece':
    return HuggingFaceTokenizer.from_wordpiece_vocab(
        path, lowercase=cfg.lowercase)
  with open(path, encoding='utf-8') as f:
    return CharTokenizer(f.read())


def _train(cfg, path: str, training_texts_fn):
  """Trains the SentencePiece model or character vocabulary into `path`."""
  if cfg.kind == 'sentencepiece':
    train_sentencepiece(
        training_texts_fn(), path, vocab_size=cfg.vocab_size,
        model_type=cfg.model_type,
        character_coverage=cfg.character_coverage,
        max_sentences=cfg.max_training_sentences,
        byte_fallback=cfg.byte_fallback)
    return
  chars = sorted(set().union(*map(set, training_texts_fn())))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    f.write(''.join(chars))
  os.replace(path + '.tmp', path)


def save_for_transformers(tokenizer_config: ml_collections.ConfigDict,
                          workdir: str, directory: str,
                          model_max_length: int) -> list[str]:
  """Writes the run's tokenizer as files `transformers.AutoTokenizer` loads
  (WordPiece: vocab.txt; tokenizer.json: copied; characters: a WordLevel
  tokenizer.json); returns the file names. SentencePiece models are copied
  as spm.model, which AutoTokenizer does not read by itself."""
  cfg = tokenizer_config
  source = tokenizer_file(cfg, workdir)
  settings = {'model_max_length': model_max_length}
  if cfg.kind == 'sentencepiece':
    shutil.copyfile(source, os.path.join(directory, 'spm.model'))
    return ['spm.model']
  if cfg.kind == 'wordpiece':
    shutil.copyfile(source, os.path.join(directory, 'vocab.txt'))
    settings.update(tokenizer_class='BertTokenizer',
                    do_lower_case=cfg.lowercase)
    files = ['vocab.txt']
  elif cfg.kind == 'hf_json':
    shutil.copyfile(source, os.path.join(directory, 'tokenizer.json'))
    beside = os.path.join(os.path.dirname(source), 'tokenizer_config.json')
    if os.path.exists(beside):  # its special tokens and class
      shutil.copyfile(beside, os.path.join(directory, 'tokenizer_config.json'))
      return ['tokenizer.json', 'tokenizer_config.json']
    settings.update(tokenizer_class='PreTrainedTokenizerFast')
    files = ['tokenizer.json']
  else:  # char
    with open(source, encoding='utf-8') as f:
      _char_level_json(f.read()).save(os.path.join(directory,
                                                   'tokenizer.json'))
    settings.update(tokenizer_class='PreTrainedTokenizerFast',
                    pad_token='<pad>', eos_token='</s>', unk_token='<unk>')
    files = ['tokenizer.json']
  with open(os.path.join(directory, 'tokenizer_config.json'), 'w',
            encoding='utf-8') as f:
    json.dump(settings, f, indent=2)
  return files + ['tokenizer_config.json']


def _char_level_json(chars: str):
  """CharTokenizer as a `tokenizers.Tokenizer`: the same ids, one piece per
  character, joined back without spaces."""
  # pylint: disable-next=g-import-not-at-top
  from tokenizers import (Regex, Tokenizer as HfTokenizer, decoders, models,
                          pre_tokenizers)
  vocab = {'<pad>': PAD_ID, '</s>': EOS_ID, '<unk>': UNK_ID}
  vocab.update({c: i + 3 for i, c in enumerate(chars)})
  tok = HfTokenizer(models.WordLevel(vocab, unk_token='<unk>'))
  tok.pre_tokenizer = pre_tokenizers.Split(Regex(r'[\s\S]'), 'isolated')
  tok.decoder = decoders.Fuse()
  return tok
