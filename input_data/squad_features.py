"""Extractive QA (SQuAD) features: overlapping windows, labels, postprocess.

A feature is one window [CLS] question [SEP] context-window [SEP] padded to
`max_length`. Long contexts give several windows whose starts are
`doc_stride` context tokens apart (BERT's run_squad.py meaning: the step, so
consecutive windows overlap by window_size - doc_stride tokens). Training
labels are token indices of the answer's first and last token; a window that
does not contain the whole answer points both at [CLS] (index 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass
class QAFeatures:
  """All windows of a set of examples; F features of length L.

  input_ids, token_type_ids, attention_mask: [F, L] int32 model inputs.
  start_positions, end_positions: [F] int32 token labels (0 = no answer).
  example_index: [F] int32, the example each window comes from.
  offsets: [F, L, 2] int32 character span of each token in the context,
    (-1, -1) outside the context window.
  context_mask: [F, L] bool, True on tokens of the context window.
  """
  input_ids: np.ndarray
  token_type_ids: np.ndarray
  attention_mask: np.ndarray
  start_positions: np.ndarray
  end_positions: np.ndarray
  example_index: np.ndarray
  offsets: np.ndarray
  context_mask: np.ndarray

  def __len__(self):
    return len(self.example_index)

  def model_inputs(self, i) -> dict[str, np.ndarray]:
    """The arrays the model and loss see for feature(s) `i`."""
    return {k: getattr(self, k)[i] for k in (
        'input_ids', 'token_type_ids', 'attention_mask', 'start_positions',
        'end_positions')}


def _answer_tokens(offsets: Sequence[tuple[int, int]], begin: int, end: int,
                   char_start: int, char_end: int) -> tuple[int, int] | None:
  """Context token indices [begin, end) covering chars [char_start, char_end).

  None when the answer is not wholly inside the window.
  """
  if not offsets or char_start < offsets[begin][0] or (
      char_end > offsets[end - 1][1]):
    return None
  s = begin
  while s < end - 1 and offsets[s][1] <= char_start:
    s += 1
  e = end - 1
  while e > s and offsets[e][0] >= char_end:
    e -= 1
  return s, e


def make_features(examples: Sequence[dict[str, Any]], tokenizer, *,
                  max_length: int = 384, doc_stride: int = 128,
                  max_query_length: int = 64) -> QAFeatures:
  """Tokenizes SQuAD examples into windows (see module docstring).

  Args:
    examples: dicts with 'question', 'context' and 'answers' (list of
      {'text', 'answer_start'}; the first answer gives the training label).
    tokenizer: a BERT-style tokenizer from input_data.tokenizers (needs cls_id,
      sep_id and encode_with_offsets).
  """
  rows = {k: [] for k in ('input_ids', 'token_type_ids', 'start', 'end',
                          'example', 'offsets', 'context')}
  cls_id, sep_id = tokenizer.cls_id, tokenizer.sep_id
  for ex_index, ex in enumerate(examples):
    q = tokenizer.encode(ex['question'])[:max_query_length]
    ctx_ids, ctx_off = tokenizer.encode_with_offsets(ex['context'])
    window = max_length - len(q) - 3
    answers = ex.get('answers') or []
    if answers:
      char_start = answers[0]['answer_start']
      char_end = char_start + len(answers[0]['text'])
    begin = 0
    while True:
      end = min(begin + window, len(ctx_ids))
      first = len(q) + 2  # Index of the first context token.
      ids = [cls_id] + q + [sep_id] + ctx_ids[begin:end] + [sep_id]
      types = [0] * first + [1] * (end - begin + 1)
      offsets = np.full((max_length, 2), -1, np.int32)
      offsets[first:first + end - begin] = np.asarray(
          ctx_off[begin:end], np.int32).reshape(-1, 2)
      label = (_answer_tokens(ctx_off, begin, end, char_start, char_end)
               if answers and end > begin else None)
      s, e = (0, 0) if label is None else (label[0] - begin + first,
                                           label[1] - begin + first)
      rows['input_ids'].append(ids + [0] * (max_length - len(ids)))
      rows['token_type_ids'].append(types + [0] * (max_length - len(types)))
      rows['start'].append(s)
      rows['end'].append(e)
      rows['example'].append(ex_index)
      rows['offsets'].append(offsets)
      rows['context'].append(offsets[:, 0] >= 0)
      if end >= len(ctx_ids):
        break
      begin += doc_stride
  input_ids = np.asarray(rows['input_ids'], np.int32)
  return QAFeatures(
      input_ids=input_ids,
      token_type_ids=np.asarray(rows['token_type_ids'], np.int32),
      attention_mask=(input_ids != 0).astype(np.int32),
      start_positions=np.asarray(rows['start'], np.int32),
      end_positions=np.asarray(rows['end'], np.int32),
      example_index=np.asarray(rows['example'], np.int32),
      offsets=np.stack(rows['offsets']) if rows['offsets'] else np.zeros(
          (0, max_length, 2), np.int32),
      context_mask=np.asarray(rows['context'], bool).reshape(-1, max_length))


def best_spans(examples: Sequence[dict[str, Any]], features: QAFeatures,
               start_logits: np.ndarray, end_logits: np.ndarray, *,
               max_answer_length: int = 30, n_best: int = 20
               ) -> dict[str, str]:
  """Best answer text per example from window logits.

  Args:
    start_logits, end_logits: [F, L] for the F features, in order.
  Returns:
    {example id: answer text}: over all windows of the example, the span
    (s, e) with s, e in the context, s <= e < s + max_answer_length and the
    highest start_logits[s] + end_logits[e], cut from the original context
    by character offsets ('' if no window has a valid span).
  """
  best = {}  # example index -> (score, text)
  for f in range(len(features)):
    ctx = features.context_mask[f]
    sl = np.where(ctx, start_logits[f], -np.inf)
    el = np.where(ctx, end_logits[f], -np.inf)
    # Only the top n_best starts and ends can form the best pair.
    starts = np.argsort(-sl)[:n_best]
    ends = np.argsort(-el)[:n_best]
    ex = int(features.example_index[f])
    for s in starts:
      if not ctx[s]:
        continue
      for e in ends:
        if not ctx[e] or e < s or e - s + 1 > max_answer_length:
          continue
        score = sl[s] + el[e]
        if ex not in best or score > best[ex][0]:
          a, b = features.offsets[f, s, 0], features.offsets[f, e, 1]
          best[ex] = (score, examples[ex]['context'][a:b])
  return {ex['id']: best[i][1] if i in best else ''
          for i, ex in enumerate(examples)}
