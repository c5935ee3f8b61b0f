"""Readers for local text data (gzip by `.gz` suffix) and `load_split`.

All readers return Python lists: the data sets this codebase trains on fit in
memory, and a list is what `grain.MapDataset.source` indexes. Problems with a
file raise `DataError`, whose one-line message names the file (and line).

Config fields read by `load_split` (`config.data`; declared with their
defaults in configs/base_config.data_config):
  data_dir: directory holding the files (never hard-coded).
  format: 'lines' (one example per line -> {'text'}), 'text' (the whole file
    as one example -> {'text'}, cut by `split_fractions`), 'parallel' (two
    line-aligned files -> {'inputs', 'targets'}), 'tsv' / 'csv' (named
    columns from the header row), 'jsonl', 'squad' (SQuAD JSON -> one dict
    per question) or 'hf' (a Hugging Face `datasets` name; needs network).
  file_pattern: file name under data_dir; '{split}' is replaced by the split.
  inputs_pattern, targets_pattern: the two files of 'parallel'.
  split_fractions: 'text': {split: (begin, end)} fractions of the file,
    e.g. {'train': (0.0, 0.9), 'validation': (0.9, 1.0)}; 'squad':
    fractions of the articles (in file order).
  skip_empty_lines: 'lines' only: drop blank lines.
  max_examples: keep only the first N examples (0: all), for smoke tests.
  heldout_examples, train_examples, subsample_seed: label budgets, see
    `_label_budget`.
  hf_name, hf_config: 'hf' only.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from typing import Any

import ml_collections
import numpy as np

from errors import UserError


class DataError(UserError):
  """A data file or directory is missing, malformed or inconsistent."""


def resolve_data_dir(data_dir: str, key: str = 'config.data.data_dir') -> str:
  """Returns `data_dir` if it is a directory, else names `key` in the error."""
  if not data_dir:
    raise DataError(f'{key} is empty: set DATA_DIR (e.g. DATA_DIR=../shared/'
                    f'data) or --{key}=<the data sets\' directory>')
  if not os.path.isdir(data_dir):
    raise DataError(f'{key}: directory {data_dir} does not exist')
  return data_dir


def _read_bytes(path: str) -> bytes:
  if os.path.isdir(path):
    raise DataError(f'{path}: is a directory, not a file')
  if not os.path.isfile(path):
    raise DataError(f'{path}: file does not exist')
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rb') as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise DataError(f'{path}: cannot read ({e})') from e
  if not data:
    raise DataError(f'{path}: file is empty')
  return data


def read_text(path: str) -> str:
  """The whole file decoded as UTF-8 (gzip if `path` ends with `.gz`)."""
  data = _read_bytes(path)
  try:
    return data.decode('utf-8')
  except UnicodeDecodeError as e:
    line = data.count(b'\n', 0, e.start) + 1  # 1-based, as editors show it.
    raise DataError(f'{path}: invalid UTF-8 on line {line}') from e


def read_lines(path: str, skip_empty: bool = False) -> list[str]:
  """One string per line, without the newline."""
  lines = read_text(path).split('\n')
  if lines and lines[-1] == '':
    lines.pop()  # The final newline does not start an extra line.
  if skip_empty:
    lines = [l for l in lines if l.strip()]
  return [l.rstrip('\r') for l in lines]


def read_parallel(inputs_path: str, targets_path: str) -> list[dict[str, str]]:
  """Line-aligned parallel files -> [{'inputs': ..., 'targets': ...}]."""
  src, tgt = read_lines(inputs_path), read_lines(targets_path)
  if len(src) != len(tgt):
    raise DataError(
        f'parallel files differ in line count: {inputs_path} has {len(src)} '
        f'lines, {targets_path} has {len(tgt)}')
  return [{'inputs': s, 'targets': t} for s, t in zip(src, tgt)]


def read_table(path: str, delimiter: str = '\t',
               columns: list[str] | None = None) -> list[dict[str, str]]:
  """TSV/CSV with a header row -> one dict per row keyed by column name.

  TSV is read without quote handling: GLUE files contain unbalanced quotes.
  """
  reader = csv.DictReader(
      io.StringIO(read_text(path)), delimiter=delimiter,
      quoting=csv.QUOTE_NONE if delimiter == '\t' else csv.QUOTE_MINIMAL)
  rows = list(reader)
  missing = [c for c in columns or () if c not in (reader.fieldnames or ())]
  if missing:
    raise DataError(f'{path}: missing columns {missing}; header has '
                    f'{reader.fieldnames}')
  for n, row in enumerate(rows):
    if None in row or None in row.values():
      raise DataError(f'{path}: line {n + 2} has a wrong number of fields')
  return rows


def read_jsonl(path: str) -> list[dict[str, Any]]:
  """JSON Lines -> one dict per non-empty line."""
  out = []
  for n, line in enumerate(read_lines(path), 1):
    if line.strip():
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError as e:
        raise DataError(f'{path}: invalid JSON on line {n} ({e.msg})') from e
  return out


def read_squad(path: str) -> list[dict[str, Any]]:
  """SQuAD v1.1 JSON -> [{'id', 'title', 'context', 'question', 'answers'}].

  `answers` is a list of {'text', 'answer_start'} (character offset into
  `context`), as in the official file.
  """
  try:
    articles = json.loads(read_text(path))
  except json.JSONDecodeError as e:
    raise DataError(f'{path}: not JSON (line {e.lineno}: {e.msg})') from e
  if not isinstance(articles, dict) or not isinstance(
      articles.get('data'), list):
    raise DataError(f'{path}: not SQuAD JSON (no "data" list of articles)')
  examples = []
  for a, art in enumerate(articles['data']):
    where = f'{path}: article {a}'
    for p, para in enumerate(_squad_list(art, 'paragraphs', where)):
      where = f'{path}: article {a} paragraph {p}'
      context = _squad_text(para, 'context', where)
      for q, qa in enumerate(_squad_list(para, 'qas', where)):
        where = f'{path}: article {a} paragraph {p} question {q}'
        examples.append({
            'id': str(_squad_text(qa, 'id', where)),
            'title': art.get('title', ''), 'context': context,
            'question': _squad_text(qa, 'question', where),
            'answers': _squad_answers(qa, where)})
  if not examples:
    raise DataError(f'{path}: no questions (SQuAD JSON whose paragraphs '
                    'have no "qas")')
  return examples


def _squad_list(item, key: str, where: str) -> list:
  if not isinstance(item, dict) or not isinstance(item.get(key), list):
    raise DataError(f'{where} has no "{key}" list')
  return item[key]


def _squad_text(item, key: str, where: str):
  if not isinstance(item, dict) or not isinstance(item.get(key),
                                                  (str, int)):
    raise DataError(f'{where} has no "{key}"')
  return item[key]


def _squad_answers(qa: dict, where: str) -> list:
  answers = qa.get('answers', [])
  if not isinstance(answers, list) or not all(
      isinstance(x, dict) and isinstance(x.get('text'), str) and
      isinstance(x.get('answer_start'), int) for x in answers):
    raise DataError(f'{where}: "answers" must be a list of {{"text", '
                    '"answer_start"}')
  return answers


def read_hf_dataset(name: str, split: str, config_name: str | None = None
                    ) -> list[dict[str, Any]]:
  """A Hugging Face `datasets` split as a list of dicts (needs the package)."""
  try:
    import datasets  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError(f'config.data.hf_name={name!r}: the `datasets` package '
                    'is not installed') from e
  return list(datasets.load_dataset(name, config_name, split=split))


def split_documents(lines: list[str], boundary: str) -> list[list[str]]:
  """Groups lines into documents for next-sentence prediction.

  Args:
    lines: the file's lines, blank lines included.
    boundary: 'blank_line' (BERT's pre-training text format: a blank line
      ends a document) or 'wikitext_heading' (a top-level heading ' = T = '
      starts a new article; other headings and blank lines are dropped).
  Returns:
    documents, each a list of non-empty lines, without empty documents.
  """
  docs, cur = [], []
  for line in lines:
    text = line.strip()
    if boundary == 'blank_line':
      is_break, keep = not text, bool(text)
    elif boundary == 'wikitext_heading':
      is_break = text.startswith('= ') and not text.startswith('= =')
      keep = bool(text) and not text.startswith('=')
    else:
      raise UserError(f'config.data.document_boundary: unknown {boundary!r}')
    if is_break and cur:
      docs.append(cur)
      cur = []
    if keep:
      cur.append(text)
  if cur:
    docs.append(cur)
  return docs


def _fraction(cfg, split: str, size: int) -> tuple[int, int]:
  """[begin, end) of `size` items that config.data.split_fractions gives
  `split`."""
  if not cfg.split_fractions or split not in cfg.split_fractions:
    raise DataError(f'config.data.split_fractions: no split {split!r}')
  begin, end = cfg.split_fractions[split]
  return int(begin * size), int(end * size)


HELDOUT_SPLIT = 'heldout'  # cut from the train split (_label_budget)


def load_split(data_config: ml_collections.ConfigDict, split: str
               ) -> list[dict[str, Any]]:
  """Reads one split as a list of example dicts (fields: module docstring).

  With heldout_examples or train_examples set, the train split and the
  split 'heldout' are cut from the train split's file (_label_budget).
  """
  cfg = data_config
  cut = cfg.heldout_examples or cfg.train_examples
  if split == HELDOUT_SPLIT or (cut and split == cfg.train_split):
    examples = _label_budget(cfg, split, _read_split(cfg, cfg.train_split))
  else:
    examples = _read_split(cfg, split)
  if not examples:
    raise DataError(f'split {split!r} of {_describe_source(cfg, split)} has '
                    'no examples' + (f' (config.data.split_fractions='
                                     f'{dict(cfg.split_fractions)})'
                                     if cfg.split_fractions else ''))
  return examples


def _label_budget(cfg, split: str, examples: list) -> list:
  """The held-out slice or the training subset of the train split.

  One permutation, seeded by subsample_seed: its first heldout_examples
  are split 'heldout', the next train_examples (0: all the rest) the
  training set. Budgets are nested (1,000 labels are the first 1,000 of
  5,000) and never meet the held-out slice; both keep the file's order.
  """
  heldout, budget = cfg.heldout_examples, cfg.train_examples
  source = _describe_source(cfg, cfg.train_split)
  if split == HELDOUT_SPLIT and not heldout:
    raise DataError(f"split {HELDOUT_SPLIT!r} is cut from the train split: "
                    'set config.data.heldout_examples')
  if heldout + max(budget, 1) > len(examples):
    raise DataError(f'config.data.heldout_examples={heldout} + '
                    f'train_examples={budget} leave no room in the '
                    f'{len(examples)} examples of {source}')
  order = np.random.default_rng(cfg.subsample_seed).permutation(len(examples))
  chosen = (order[:heldout] if split == HELDOUT_SPLIT else
            order[heldout:heldout + budget] if budget else order[heldout:])
  return [examples[i] for i in sorted(chosen)]


def _read_split(cfg, split: str) -> list[dict[str, Any]]:
  """The examples of one split's file(s), the first max_examples if set."""
  fmt = cfg.format
  if fmt == 'hf':
    examples = read_hf_dataset(cfg.hf_name, split, cfg.hf_config or None)
  else:
    data_dir = resolve_data_dir(cfg.data_dir)
    path = lambda p: os.path.join(data_dir, p.format(split=split))
    if fmt == 'parallel':
      examples = read_parallel(path(cfg.inputs_pattern),
                               path(cfg.targets_pattern))
    elif fmt == 'lines':
      examples = [{'text': l} for l in read_lines(
          path(cfg.file_pattern), cfg.skip_empty_lines)]
    elif fmt == 'text':
      text = read_text(path(cfg.file_pattern))
      begin, end = _fraction(cfg, split, len(text))
      examples = [{'text': text[begin:end]}]
    elif fmt in ('tsv', 'csv'):
      examples = read_table(path(cfg.file_pattern),
                            '\t' if fmt == 'tsv' else ',')
    elif fmt == 'jsonl':
      examples = read_jsonl(path(cfg.file_pattern))
    elif fmt == 'squad':
      examples = read_squad(path(cfg.file_pattern))
      if cfg.split_fractions:  # whole articles, so no context is in both
        titles = list(dict.fromkeys(e['title'] for e in examples))
        begin, end = _fraction(cfg, split, len(titles))
        keep = set(titles[begin:end])
        examples = [e for e in examples if e['title'] in keep]
    else:
      raise DataError(f'config.data.format: unknown format {fmt!r}')
  if cfg.max_examples:
    examples = examples[:cfg.max_examples]
  return examples


def _describe_source(cfg, split: str) -> str:
  """The file(s) or data set a split is read from, for messages."""
  if cfg.format == 'hf':
    return f'config.data.hf_name={cfg.hf_name!r}'
  patterns = ([cfg.inputs_pattern, cfg.targets_pattern]
              if cfg.format == 'parallel' else [cfg.file_pattern])
  return ', '.join(os.path.join(cfg.data_dir, p.format(split=split))
                   for p in patterns)
