"""Evaluation metrics on host-side text and labels, mergeable across hosts.

Each metric over an evaluation set keeps sufficient statistics that are
summed over hosts (by train.py) before the score is computed (BLEU: n-gram
matches and lengths; ROUGE/SQuAD: sums and counts), because a mean of
per-host scores is not the score of the whole set.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence

import numpy as np

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


def rouge_from_sums(sums: np.ndarray) -> dict[str, float]:
  """Means from (host-summed) `rouge_sums`."""
  return {t: float(sums[i] / max(sums[-1], 1))
          for i, t in enumerate(ROUGE_TYPES)}


# ------------------------------------------------------------ language


def perplexity(loss_sum: float, token_count: float) -> float:
  """exp(mean token negative log-likelihood), from summed loss and count;
  capped at exp(50) so a diverged model reports a number, not inf."""
  return float(np.exp(min(loss_sum / max(token_count, 1), 50.0)))


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


def squad_sums(answers: dict[str, str], examples: Sequence[dict]
               ) -> np.ndarray:
  """[3] float64: sums of exact match and F1 (0..1) and the question count
  over `examples` ({'id', 'answers'}); a question without an answer in
  `answers` scores 0."""
  sums = np.zeros((3,), np.float64)
  for ex in examples:
    refs = [a['text'] for a in ex['answers']]
    pred = answers.get(ex['id'], '')
    sums += [squad_exact_match(pred, refs), squad_f1(pred, refs), 1]
  return sums
