"""BERT pre-training examples: sentence pairs for NSP and MLM masking.

Everything is a pure function of its inputs and a `np.random.Generator`, so
the grain pipeline (`random_map`, one generator per example index derived
from the pipeline seed) reproduces the same masks after a restore.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IS_NEXT, NOT_NEXT = 0, 1  # NSP labels, as Devlin et al.


def nsp_instances(documents: Sequence[Sequence[str]]) -> list[tuple[int, int]]:
  """(document, line) pairs that have a next line in the same document.

  Only these start a pair, so the 50/50 IsNext/NotNext draw below is not
  biased towards NotNext by last lines that have no true continuation.
  """
  return [(d, i) for d, doc in enumerate(documents)
          for i in range(len(doc) - 1)]


def sample_sentence_pair(documents: Sequence[Sequence[str]], doc_index: int,
                         line_index: int, rng: np.random.Generator,
                         next_prob: float = 0.5) -> tuple[str, str, int]:
  """Segment A = line `line_index`; B = its true next line with `next_prob`,
  else a random line of another document. Returns (a, b, nsp_label)."""
  a = documents[doc_index][line_index]
  if rng.random() < next_prob or len(documents) < 2:
    return a, documents[doc_index][line_index + 1], IS_NEXT
  other = int(rng.integers(len(documents) - 1))
  other += other >= doc_index  # Any document but this one.
  doc = documents[other]
  return a, doc[int(rng.integers(len(doc)))], NOT_NEXT


def build_single(ids: Sequence[int], max_length: int, cls_id: int,
                 sep_id: int) -> tuple[np.ndarray, np.ndarray]:
  """[CLS] text [SEP], the text cut at its end to fit `max_length`: the row
  of MLM-only pre-training (RoBERTa, no NSP). Returns (input_ids [n],
  token_type_ids [n], all 0) with n <= max_length."""
  row = [cls_id] + list(ids)[:max_length - 2] + [sep_id]
  return np.asarray(row, np.int32), np.zeros(len(row), np.int32)


def build_pair(ids_a: Sequence[int], ids_b: Sequence[int], max_length: int,
               cls_id: int, sep_id: int) -> tuple[np.ndarray, np.ndarray]:
  """[CLS] a [SEP] b [SEP] truncated to `max_length`.

  The longer segment loses tokens from its end first (BERT's
  truncate_seq_pair), so both keep some text.
  Returns (input_ids [n], token_type_ids [n]) with n <= max_length.
  """
  a, b = list(ids_a), list(ids_b)
  while len(a) + len(b) > max_length - 3:
    (a if len(a) >= len(b) else b).pop()
  ids = [cls_id] + a + [sep_id] + b + [sep_id]
  types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
  return np.asarray(ids, np.int32), np.asarray(types, np.int32)


def mask_tokens(ids: np.ndarray, rng: np.random.Generator, *,
                vocab_size: int, mask_id: int, special_ids: Sequence[int],
                mask_rate: float = 0.15, mask_token_rate: float = 0.8,
                random_token_rate: float = 0.1,
                max_predictions: int | None = None,
                is_continuation: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Chooses `mask_rate` of the maskable tokens and corrupts them.

  Of the chosen positions, `mask_token_rate` become [MASK],
  `random_token_rate` a random non-special token, and the rest keep their
  token (the model must still predict them). Special tokens and padding are
  never chosen. The count is round(mask_rate * maskable), at least 1, at most
  `max_predictions`, as in BERT's create_pretraining_data.

  Args:
    ids: [L] token ids (padding included).
    rng: the generator that makes this deterministic.
    is_continuation: optional [L] bool, True on WordPiece '##' pieces; then
      whole words are chosen (a word's pieces are masked together).
  Returns:
    input_ids [L] int32 (corrupted), mlm_targets [L] int32 (original id at
    chosen positions, 0 elsewhere), mlm_weights [L] float32 (1 at chosen).
  """
  ids = np.asarray(ids, np.int32)
  special = np.isin(ids, np.asarray(list(special_ids), np.int32))
  candidates = np.flatnonzero(~special)
  # Words: a start position and the '##' pieces that follow it.
  if is_continuation is not None and len(candidates):
    cont = np.asarray(is_continuation, bool)[candidates]
    cont[0] = False
    words = np.split(candidates, np.flatnonzero(~cont)[1:])
  else:
    words = [candidates[i:i + 1] for i in range(len(candidates))]
  num = min(max(1, int(round(len(candidates) * mask_rate))),
            max_predictions or len(ids))
  chosen = []
  for w in rng.permutation(len(words)) if words else []:
    if len(chosen) >= num:
      break
    if len(chosen) + len(words[w]) > num:
      continue  # Skip words that overshoot, as BERT's whole-word masking.
    chosen.extend(words[w])
  chosen = np.sort(np.asarray(chosen, np.int64))

  out, targets = ids.copy(), np.zeros_like(ids)
  weights = np.zeros(ids.shape, np.float32)
  targets[chosen], weights[chosen] = ids[chosen], 1.0
  r = rng.random(len(chosen))
  to_mask = chosen[r < mask_token_rate]
  to_random = chosen[(r >= mask_token_rate) &
                     (r < mask_token_rate + random_token_rate)]
  out[to_mask] = mask_id
  if len(to_random):
    normal = np.setdiff1d(np.arange(vocab_size), np.asarray(special_ids))
    out[to_random] = rng.choice(normal, size=len(to_random))
  return out, targets, weights
