"""MLM masking proportions, special tokens, whole words and NSP pairs."""

import numpy as np
import pytest

from input_data import mlm_masking

CLS, SEP, MASK, PAD, VOCAB = 101, 102, 103, 0, 1000
SPECIAL = [PAD, CLS, SEP, MASK]


def sequence(rng, n=120, length=128):
  ids = np.zeros((length,), np.int32)
  ids[0], ids[n - 1] = CLS, SEP
  ids[1:n - 1] = rng.integers(200, VOCAB, size=n - 2)
  ids[60] = SEP
  return ids


def test_proportions_and_specials_never_masked():
  rng = np.random.default_rng(0)
  chosen = masked = randomised = kept = maskable = 0
  for _ in range(400):
    ids = sequence(rng)
    out, targets, weights = mlm_masking.mask_tokens(
        ids, rng, vocab_size=VOCAB, mask_id=MASK, special_ids=SPECIAL)
    w = weights > 0
    special = np.isin(ids, SPECIAL)
    assert not (w & special).any()  # Never [CLS], [SEP] or padding.
    np.testing.assert_array_equal(out[special], ids[special])
    np.testing.assert_array_equal(out[~w], ids[~w])  # Unchosen untouched.
    np.testing.assert_array_equal(targets[w], ids[w])
    assert (targets[~w] == 0).all()
    assert not np.isin(out[w & (out != MASK)], SPECIAL).any()
    maskable += (~special).sum()
    chosen += w.sum()
    masked += (out[w] == MASK).sum()
    kept += (out[w] == ids[w]).sum()
    randomised += ((out[w] != MASK) & (out[w] != ids[w])).sum()
  assert chosen / maskable == pytest.approx(0.15, abs=0.005)
  # ~17,000 chosen tokens: 3 sigma of a 10% share is about 0.7%.
  assert masked / chosen == pytest.approx(0.8, abs=0.01)
  assert randomised / chosen == pytest.approx(0.1, abs=0.01)
  assert kept / chosen == pytest.approx(0.1, abs=0.01)


def test_deterministic_from_seed_and_max_predictions():
  ids = sequence(np.random.default_rng(1))
  a = mlm_masking.mask_tokens(ids, np.random.default_rng(7), vocab_size=VOCAB,
                              mask_id=MASK, special_ids=SPECIAL)
  b = mlm_masking.mask_tokens(ids, np.random.default_rng(7), vocab_size=VOCAB,
                              mask_id=MASK, special_ids=SPECIAL)
  c = mlm_masking.mask_tokens(ids, np.random.default_rng(8), vocab_size=VOCAB,
                              mask_id=MASK, special_ids=SPECIAL)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a[2], c[2])
  capped = mlm_masking.mask_tokens(ids, np.random.default_rng(7),
                                   vocab_size=VOCAB, mask_id=MASK,
                                   special_ids=SPECIAL, max_predictions=5)
  assert capped[2].sum() == 5


def test_whole_word_masking():
  rng = np.random.default_rng(0)
  for _ in range(50):
    ids = sequence(rng)
    # Every third maskable token continues the previous word ('##').
    cont = np.zeros(ids.shape, bool)
    cont[2:118:3] = True
    cont[61] = False
    _, _, weights = mlm_masking.mask_tokens(
        ids, rng, vocab_size=VOCAB, mask_id=MASK, special_ids=SPECIAL,
        is_continuation=cont)
    w = weights > 0
    # A chosen piece implies its whole word is chosen, and vice versa.
    starts = np.flatnonzero(cont)
    np.testing.assert_array_equal(w[starts], w[starts - 1])
    assert w.sum() > 0


def test_sentence_pairs():
  docs = [[f'd{d} s{i}' for i in range(5)] for d in range(20)]
  inst = mlm_masking.nsp_instances(docs)
  assert len(inst) == 20 * 4 and (0, 4) not in inst
  rng = np.random.default_rng(0)
  labels = []
  for d, i in inst * 50:
    a, b, label = mlm_masking.sample_sentence_pair(docs, d, i, rng)
    labels.append(label)
    assert a == docs[d][i]
    if label == mlm_masking.IS_NEXT:
      assert b == docs[d][i + 1]
    else:
      assert not b.startswith(f'd{d} ')  # From another document.
  assert np.mean(labels) == pytest.approx(0.5, abs=0.03)
  ids, types = mlm_masking.build_pair(list(range(10, 30)), [7, 8, 9], 12,
                                      CLS, SEP)
  assert len(ids) == 12 and ids[0] == CLS and (ids == SEP).sum() == 2
  # The longer segment was cut first; B keeps its 3 tokens.
  np.testing.assert_array_equal(ids[-4:], [7, 8, 9, SEP])
  np.testing.assert_array_equal(types, [0] * 8 + [1] * 4)
