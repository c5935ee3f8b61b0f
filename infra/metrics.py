"""Evaluation metrics on host-side text and labels, mergeable across hosts.

Each metric over an evaluation set keeps sufficient statistics that are
summed over hosts before the score is computed (BLEU: n-gram matches and
lengths; classification: a confusion matrix; ROUGE/SQuAD: sums and counts),
because a mean of per-host scores is not the score of the whole set.
"""

from __future__ import annotations

import collections
import json
import re
import string
from collections.abc import Sequence

import jax
import numpy as np

# ----------------------------------------------------------------- hosts


def sum_across_processes(x: np.ndarray) -> np.ndarray:
  """Sums a fixed-shape numpy array over all JAX processes (identity if 1)."""
  x = np.asarray(x)
  if jax.process_count() == 1:
    return x
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.asarray(multihost_utils.process_allgather(x)).sum(axis=0)


def allgather_objects(items: list) -> list:
  """Concatenates JSON-serialisable python lists from all processes, in
  process order (identity if 1). Used for predictions of unequal length."""
  if jax.process_count() == 1:
    return list(items)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  data = np.frombuffer(json.dumps(items).encode('utf-8'), np.uint8)
  # Arrays must have one shape on every host: gather lengths, then pad.
  lengths = np.asarray(multihost_utils.process_allgather(
      np.asarray([len(data)], np.int64))).reshape(-1)
  padded = np.zeros((int(lengths.max()),), np.uint8)
  padded[:len(data)] = data
  everything = np.asarray(multihost_utils.process_allgather(padded))
  out = []
  for row, n in zip(everything, lengths):
    out.extend(json.loads(row[:n].tobytes().decode('utf-8')))
  return out


# ------------------------------------------------------------------ BLEU

_BLEU_STATS = 10  # [sys_len, ref_len, matches 1..4, totals 1..4]


def _bleu(lowercase: bool, tokenize: str):
  from sacrebleu.metrics import BLEU  # pylint: disable=g-import-not-at-top
  return BLEU(lowercase=lowercase, tokenize=tokenize)


def bleu_stats(hypotheses: Sequence[str], references: Sequence[str], *,
               lowercase: bool = False, tokenize: str = '13a') -> np.ndarray:
  """Sufficient statistics [10] int64 of corpus BLEU for this host's pairs:
  system and reference lengths, n-gram matches and totals for n = 1..4."""
  if len(hypotheses) != len(references):
    raise ValueError(f'{len(hypotheses)} hypotheses vs {len(references)} '
                     'references')
  if not hypotheses:
    return np.zeros((_BLEU_STATS,), np.int64)
  s = _bleu(lowercase, tokenize).corpus_score(list(hypotheses),
                                              [list(references)])
  return np.asarray([s.sys_len, s.ref_len, *s.counts, *s.totals], np.int64)


def bleu_from_stats(stats: np.ndarray, *, lowercase: bool = False,
                    tokenize: str = '13a') -> tuple[float, str]:
  """(BLEU score 0..100, sacrebleu signature) from summed `bleu_stats`."""
  from sacrebleu.metrics import BLEU  # pylint: disable=g-import-not-at-top
  stats = [int(v) for v in stats]
  score = BLEU.compute_bleu(correct=stats[2:6], total=stats[6:10],
                            sys_len=stats[0], ref_len=stats[1],
                            smooth_method='exp')
  bleu = _bleu(lowercase, tokenize)
  bleu.corpus_score(['x'], [['x']])  # Sets nrefs, needed by the signature.
  return float(score.score), str(bleu.get_signature())


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]
                ) -> tuple[float, str]:
  """Standard sacreBLEU (cased, 13a, exp smoothing) on detokenized text,
  over the hypotheses of all hosts. Returns (score, signature)."""
  return bleu_from_stats(sum_across_processes(
      bleu_stats(hypotheses, references)))


def tokenized_lowercase_bleu(hypotheses: Sequence[str],
                             references: Sequence[str]) -> tuple[float, str]:
  """The "tokenized, lowercased BLEU" of the Multi30k literature.

  Computes sacreBLEU with lowercase=True and the 13a (mteval-v13a)
  tokenizer on detokenized text: punctuation is split from words, text is
  lowercased, then standard 4-gram corpus BLEU. Papers ran multi-bleu.perl on
  Moses-tokenized lowercased text; 13a splits punctuation the same way for
  these captions but not identically (e.g. hyphens, apostrophes), so scores
  are comparable to within a few tenths, not exactly.
  """
  return bleu_from_stats(sum_across_processes(bleu_stats(
      hypotheses, references, lowercase=True)), lowercase=True)


# ----------------------------------------------------------------- ROUGE

ROUGE_TYPES = ('rouge1', 'rouge2', 'rougeL')


def rouge_sums(predictions: Sequence[str], references: Sequence[str]
               ) -> np.ndarray:
  """[4] float64: sums of ROUGE-1/2/L F-measure (Porter stemming) and count."""
  from rouge_score import rouge_scorer  # pylint: disable=g-import-not-at-top
  scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
  sums = np.zeros((len(ROUGE_TYPES) + 1,), np.float64)
  for pred, ref in zip(predictions, references, strict=True):
    s = scorer.score(ref, pred)
    sums[:-1] += [s[t].fmeasure for t in ROUGE_TYPES]
    sums[-1] += 1
  return sums


def rouge(predictions: Sequence[str], references: Sequence[str]
          ) -> dict[str, float]:
  """Mean ROUGE-1/2/L F-measure in 0..1 over all hosts' pairs."""
  return rouge_from_sums(sum_across_processes(rouge_sums(predictions,
                                                        references)))


def rouge_from_sums(sums: np.ndarray) -> dict[str, float]:
  """Means from (host-summed) `rouge_sums`."""
  return {t: float(sums[i] / max(sums[-1], 1))
          for i, t in enumerate(ROUGE_TYPES)}


# -------------------------------------------------------- classification


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray,
                     num_classes: int, weights: np.ndarray | None = None
                     ) -> np.ndarray:
  """[num_classes, num_classes] int64 counts, rows = label, cols = predicted.

  Rows with weight 0 (evaluation filler) are not counted.
  """
  predictions, labels = np.asarray(predictions), np.asarray(labels)
  keep = np.ones(labels.shape, bool) if weights is None else (
      np.asarray(weights) > 0)
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (labels[keep], predictions[keep]), 1)
  return cm


def accuracy(confusion: np.ndarray) -> float:
  return float(np.trace(confusion) / max(confusion.sum(), 1))


def f1(confusion: np.ndarray, average: str = 'binary',
       positive: int = 1) -> float:
  """F1 from a confusion matrix: 'binary' (class `positive`) or 'macro'."""
  tp = np.diag(confusion).astype(np.float64)
  precision_den, recall_den = confusion.sum(0), confusion.sum(1)
  per_class = np.where(precision_den + recall_den > 0,
                       2 * tp / np.maximum(precision_den + recall_den, 1), 0.0)
  if average == 'binary':
    return float(per_class[positive])
  if average == 'macro':
    return float(per_class.mean())
  raise ValueError(f'average must be binary or macro, got {average!r}')


def perplexity(loss_sum: float, token_count: float) -> float:
  """exp(mean token negative log-likelihood), from summed loss and count."""
  return float(np.exp(loss_sum / max(token_count, 1)))


# ----------------------------------------------------------------- SQuAD


def normalize_answer(s: str) -> str:
  """Official SQuAD v1.1 normalisation: lowercase, drop punctuation, drop
  articles (a, an, the), collapse whitespace."""
  s = s.lower()
  s = ''.join(ch for ch in s if ch not in set(string.punctuation))
  s = re.sub(r'\b(a|an|the)\b', ' ', s)
  return ' '.join(s.split())


def squad_exact_match(prediction: str, references: Sequence[str]) -> float:
  """1.0 if the normalised prediction equals any normalised reference."""
  return float(max(normalize_answer(prediction) == normalize_answer(r)
                   for r in references))


def _token_f1(prediction: str, reference: str) -> float:
  pred, ref = normalize_answer(prediction).split(), normalize_answer(
      reference).split()
  common = collections.Counter(pred) & collections.Counter(ref)
  same = sum(common.values())
  if same == 0:
    return 0.0
  precision, recall = same / len(pred), same / len(ref)
  return 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str, references: Sequence[str]) -> float:
  """Token-overlap F1, max over the reference answers."""
  return max(_token_f1(prediction, r) for r in references)


def squad_scores(predictions: dict[str, str], examples: Sequence[dict]
                 ) -> dict[str, float]:
  """Exact match and F1 in percent over `examples` ({'id', 'answers'});
  a question without a prediction scores 0. Sums are merged across hosts."""
  sums = np.zeros((3,), np.float64)
  for ex in examples:
    refs = [a['text'] for a in ex['answers']]
    pred = predictions.get(ex['id'], '')
    sums += [squad_exact_match(pred, refs), squad_f1(pred, refs), 1]
  sums = sum_across_processes(sums)
  n = max(sums[2], 1)
  return {'exact_match': 100 * sums[0] / n, 'f1': 100 * sums[1] / n}
