"""Metrics against known values and hand-computed cases."""

import math

import numpy as np
import pytest
import sacrebleu

from infra import metrics

HYPS = ['The cat sat on the mat.', 'A dog runs in the park!',
        'two men are playing soccer']
REFS = ['The cat sat on a mat.', 'A dog is running in the park!',
        'Two men are playing football.']


def test_bleu_matches_sacrebleu_and_signature():
  score, sig = metrics.corpus_bleu(HYPS, REFS)
  assert score == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
  assert 'case:mixed' in sig and 'tok:13a' in sig and 'nrefs:1' in sig


def test_bleu_identical_is_100_and_stats_merge():
  assert metrics.corpus_bleu(REFS, REFS)[0] == pytest.approx(100.0)
  # Stats of two halves summed = stats of the whole (mergeable across hosts).
  whole = metrics.bleu_stats(HYPS, REFS)
  halves = metrics.bleu_stats(HYPS[:1], REFS[:1]) + metrics.bleu_stats(
      HYPS[1:], REFS[1:])
  np.testing.assert_array_equal(whole, halves)
  assert metrics.bleu_from_stats(halves)[0] == pytest.approx(
      metrics.corpus_bleu(HYPS, REFS)[0])


def test_tokenized_lowercase_bleu():
  score, sig = metrics.tokenized_lowercase_bleu(HYPS, REFS)
  assert 'case:lc' in sig
  assert score == pytest.approx(
      sacrebleu.corpus_bleu(HYPS, [REFS], lowercase=True).score)
  # Case differences only matter for the cased score.
  upper = [h.upper() for h in REFS]
  assert metrics.tokenized_lowercase_bleu(upper, REFS)[0] == pytest.approx(100)
  assert metrics.corpus_bleu(upper, REFS)[0] < 10


def test_rouge():
  same = metrics.rouge(REFS, REFS)
  assert all(v == pytest.approx(1.0) for v in same.values())
  r = metrics.rouge(['the cats sat'], ['the cat sat down'])
  # Stemming: cats ~ cat, so unigram P = 3/3, R = 3/4.
  assert r['rouge1'] == pytest.approx(2 * 1 * 0.75 / 1.75)
  assert r['rouge2'] == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))


def test_classification_metrics():
  labels = np.array([1, 1, 0, 0, 1, 0])
  preds = np.array([1, 0, 0, 1, 1, 1])
  weights = np.array([1, 1, 1, 1, 1, 0])  # Last row is filler.
  cm = metrics.confusion_matrix(preds, labels, 2, weights)
  assert cm.sum() == 5
  assert metrics.accuracy(cm) == pytest.approx(3 / 5)
  # Positive class: tp=2, fp=1, fn=1 -> F1 = 2/3; class 0: tp=1 fp=1 fn=1.
  assert metrics.f1(cm) == pytest.approx(2 / 3)
  assert metrics.f1(cm, 'macro') == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_squad_em_f1():
  assert metrics.normalize_answer('The  Eiffel-Tower!') == 'eiffeltower'
  assert metrics.squad_exact_match('the Denver Broncos', ['Denver Broncos'])
  assert not metrics.squad_exact_match('Broncos', ['Denver Broncos'])
  assert metrics.squad_f1('Broncos', ['Denver Broncos']) == pytest.approx(
      2 * 1 * 0.5 / 1.5)
  assert metrics.squad_f1('Broncos', ['x', 'Broncos']) == 1.0  # Max over refs.
  scores = metrics.squad_scores(
      {'a': 'Denver Broncos', 'b': 'nothing'},
      [{'id': 'a', 'answers': [{'text': 'Denver Broncos'}]},
       {'id': 'b', 'answers': [{'text': 'Carolina'}]},
       {'id': 'c', 'answers': [{'text': 'x'}]}])
  assert scores['exact_match'] == pytest.approx(100 / 3)


def test_perplexity_and_gather():
  assert metrics.perplexity(2 * math.log(5.0), 2) == pytest.approx(5.0)
  np.testing.assert_array_equal(metrics.sum_across_processes(np.ones(3)),
                                np.ones(3))
  assert metrics.allgather_objects(['a', 'b']) == ['a', 'b']
