"""Metrics against known values and hand-computed cases."""

import math

import numpy as np
import pytest
import sacrebleu

from training import metrics, parallel


def corpus_bleu(hyps, refs, lowercase=False):
  """What train.py computes from one host's sums."""
  return metrics.bleu_from_stats(
      metrics.bleu_stats(hyps, refs, lowercase=lowercase),
      lowercase=lowercase)


def rouge(preds, refs):
  return metrics.rouge_from_sums(metrics.rouge_sums(preds, refs))

HYPS = ['The cat sat on the mat.', 'A dog runs in the park!',
        'two men are playing soccer']
REFS = ['The cat sat on a mat.', 'A dog is running in the park!',
        'Two men are playing football.']


def test_bleu_matches_sacrebleu_and_signature():
  score, sig = corpus_bleu(HYPS, REFS)
  assert score == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
  assert 'case:mixed' in sig and 'tok:13a' in sig and 'nrefs:1' in sig


def test_bleu_identical_is_100_and_stats_merge():
  assert corpus_bleu(REFS, REFS)[0] == pytest.approx(100.0)
  # Stats of two halves summed = stats of the whole (mergeable across hosts).
  whole = metrics.bleu_stats(HYPS, REFS)
  halves = metrics.bleu_stats(HYPS[:1], REFS[:1]) + metrics.bleu_stats(
      HYPS[1:], REFS[1:])
  np.testing.assert_array_equal(whole, halves)
  assert metrics.bleu_from_stats(halves)[0] == pytest.approx(
      corpus_bleu(HYPS, REFS)[0])


def test_tokenized_lowercase_bleu():
  score, sig = corpus_bleu(HYPS, REFS, lowercase=True)
  assert 'case:lc' in sig
  assert score == pytest.approx(
      sacrebleu.corpus_bleu(HYPS, [REFS], lowercase=True).score)
  # Case differences only matter for the cased score.
  upper = [h.upper() for h in REFS]
  assert corpus_bleu(upper, REFS, lowercase=True)[0] == pytest.approx(100)
  assert corpus_bleu(upper, REFS)[0] < 10


def test_rouge():
  same = rouge(REFS, REFS)
  assert all(v == pytest.approx(1.0) for v in same.values())
  r = rouge(['the cats sat'], ['the cat sat down'])
  # Stemming: cats ~ cat, so unigram P = 3/3, R = 3/4.
  assert r['rouge1'] == pytest.approx(2 * 1 * 0.75 / 1.75)
  assert r['rouge2'] == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))


def test_squad_em_f1():
  assert metrics.normalize_answer('The  Eiffel-Tower!') == 'eiffeltower'
  assert metrics.squad_exact_match('the Denver Broncos', ['Denver Broncos'])
  assert not metrics.squad_exact_match('Broncos', ['Denver Broncos'])
  assert metrics.squad_f1('Broncos', ['Denver Broncos']) == pytest.approx(
      2 * 1 * 0.5 / 1.5)
  assert metrics.squad_f1('Broncos', ['x', 'Broncos']) == 1.0  # Max over refs.
  em, f1, count = metrics.squad_sums(
      {'a': 'Denver Broncos', 'b': 'nothing'},
      [{'id': 'a', 'answers': [{'text': 'Denver Broncos'}]},
       {'id': 'b', 'answers': [{'text': 'Carolina'}]},
       {'id': 'c', 'answers': [{'text': 'x'}]}])
  assert (em, f1, count) == (1.0, 1.0, 3.0)


def test_perplexity_and_gather():
  assert metrics.perplexity(2 * math.log(5.0), 2) == pytest.approx(5.0)
  assert metrics.perplexity(1e6, 1) == pytest.approx(math.exp(50))  # capped
  np.testing.assert_array_equal(parallel.sum_over_hosts(np.ones(3)),
                                np.ones(3))
  assert parallel.allgather_objects(['a', 'b']) == ['a', 'b']
