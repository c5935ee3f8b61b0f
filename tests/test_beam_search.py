"""Beam search against fake `tokens_to_logits` callbacks built from fixed logit tables."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from decoding import beam_search as bs
from decoding import sampling

EOS = 1


def prefix_model(table):
  """Callback whose logits depend on the row and on the whole generated prefix.

  table: float[batch, n_codes, vocab]; the prefix t1..tn (BOS excluded) has code
  sum (t_i + 1) * (vocab + 1) ** (n - i). The cache holds a shared scalar step index and
  per-row `row` and `code` leaves, so a beam gathered from the wrong row or parent reads the
  wrong logits, and a scalar leaf broadcast to the batch breaks the `index > 0` test.
  """
  vocab = table.shape[-1]
  table = jnp.asarray(table, jnp.float32)

  def tokens_to_logits(ids, cache):
    assert cache['index'].ndim == 0
    code = jnp.where(cache['index'] > 0, cache['code'] * (vocab + 1) + ids[:, 0] + 1,
                     cache['code'])
    logits = table[cache['row'], code]
    return logits, dict(cache, index=cache['index'] + 1, code=code)

  return tokens_to_logits


def init_cache(batch):
  return dict(index=jnp.array(0, jnp.int32), row=jnp.arange(batch, dtype=jnp.int32),
              code=jnp.zeros((batch,), jnp.int32))


def prefix_code(prefix, vocab):
  code = 0
  for t in prefix:
    code = code * (vocab + 1) + t + 1
  return code


def log_softmax(x):
  x = np.asarray(x, np.float64)
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def brute_force(table_row, max_len, alpha):
  """All EOS-terminated sequences of length <= max_len, sorted by GNMT score (best first)."""
  vocab = table_row.shape[-1]
  logp = log_softmax(table_row)
  results = []
  for n in range(1, max_len + 1):
    for body in itertools.product([t for t in range(vocab) if t != EOS], repeat=n - 1):
      seq = body + (EOS,)
      total = sum(logp[prefix_code(seq[:i], vocab), t] for i, t in enumerate(seq))
      results.append((total / ((5.0 + n) / 6.0) ** alpha, seq))
  return sorted(results, key=lambda r: -r[0])


def crafted_table(vocab, max_len, dists, default_eos=0.5):
  """[1, n_codes, vocab] log-prob table: dists maps prefix tuples to {token: prob}; the rest of
  each row's mass is spread evenly over the other tokens. Unlisted prefixes end with EOS at
  probability default_eos."""
  table = np.zeros((1, (vocab + 1) ** max_len, vocab))
  for code in range(table.shape[1]):
    table[0, code] = dist_logits({EOS: default_eos}, vocab)
  for prefix, dist in dists.items():
    table[0, prefix_code(prefix, vocab)] = dist_logits(dist, vocab)
  return table


def dist_logits(dist, vocab):
  rest = (1.0 - sum(dist.values())) / (vocab - len(dist))
  return np.log([dist.get(t, rest) for t in range(vocab)])


def run_beam(table, beam_size, max_len, alpha=0.6, **kw):
  batch = table.shape[0]
  return bs.beam_search(prefix_model(table), init_cache(batch), batch_size=batch,
                        beam_size=beam_size, max_decode_len=max_len, eos_id=EOS, alpha=alpha, **kw)


def test_expand_flatten_and_scalar_leaves_pass_through():
  tree = dict(index=jnp.array(7), x=jnp.arange(6).reshape(2, 3))
  expanded = bs.expand_to_beams(tree, 3)
  assert expanded['index'].shape == () and int(expanded['index']) == 7
  np.testing.assert_array_equal(expanded['x'][:, 0], [0, 0, 0, 3, 3, 3])
  unflat = bs.unflatten_beams(expanded, 3)
  assert unflat['x'].shape == (2, 3, 3) and unflat['index'].shape == ()
  np.testing.assert_array_equal(bs.flatten_beams(unflat)['x'], expanded['x'])


@pytest.mark.parametrize('max_len', [3, 4])
def test_brute_force_exact_with_wide_beam(max_len):
  """Beam >= all 4**max_len sequences: the finished set must be every EOS-terminated
  sequence, in exact score order, for each batch row (rows have different tables)."""
  vocab, batch = 4, 2
  table = np.random.RandomState(max_len).normal(size=(batch, (vocab + 1) ** max_len, vocab))
  seqs, scores = run_beam(table, beam_size=vocab ** max_len, max_len=max_len)
  for row in range(batch):
    expected = brute_force(table[row], max_len, alpha=0.6)
    n = len(expected)
    np.testing.assert_allclose(scores[row, :n], [s for s, _ in expected], rtol=1e-5)
    for k, (_, seq) in enumerate(expected):
      np.testing.assert_array_equal(seqs[row, k], list(seq) + [0] * (max_len - len(seq)))
    assert np.all(np.isneginf(scores[row, n:])) and np.all(seqs[row, n:] == 0)


def test_beam_one_equals_greedy():
  """With alpha=0 the first EOS taken by the single beam can never be beaten, so width 1 is
  exactly greedy (with alpha > 0 a longer live beam may legitimately overtake it)."""
  vocab, max_len, batch = 5, 5, 3
  table = np.random.RandomState(0).normal(size=(batch, (vocab + 1) ** max_len, vocab)) * 2
  seqs, _ = run_beam(table, beam_size=1, max_len=max_len, alpha=0.0)
  greedy = sampling.greedy_decode(prefix_model(table), init_cache(batch), batch_size=batch,
                                  max_decode_len=max_len, eos_id=EOS)
  np.testing.assert_array_equal(seqs[:, 0], greedy)


def test_finds_better_sequence_than_greedy_trap():
  """Token 2 is the likeliest first step but leads to a flat distribution; token 3 leads to a
  near-certain continuation. Greedy falls for 2, beam search must find 3 4 EOS."""
  vocab, max_len = 6, 4
  table = crafted_table(vocab, max_len, {
      (): {2: 0.5, 3: 0.4}, (2,): {}, (3,): {4: 0.99}, (2, 0): {EOS: 0.9},
      (2, 2): {EOS: 0.9}, (2, 3): {EOS: 0.9}, (2, 4): {EOS: 0.9}, (2, 5): {EOS: 0.9},
      (3, 4): {EOS: 0.99}})
  greedy = sampling.greedy_decode(prefix_model(table), init_cache(1), batch_size=1,
                                  max_decode_len=max_len, eos_id=EOS)
  assert int(greedy[0, 0]) == 2
  seqs, scores = run_beam(table, beam_size=2, max_len=max_len)
  np.testing.assert_array_equal(seqs[0, 0], [3, 4, EOS, 0])
  best_score, best_seq = brute_force(table[0], max_len, alpha=0.6)[0]
  assert best_seq == (3, 4, EOS)
  np.testing.assert_allclose(scores[0, 0], best_score, rtol=1e-5)
  greedy_seq = tuple(int(t) for t in greedy[0] if t != 0)
  greedy_score = dict((s, v) for v, s in brute_force(table[0], max_len, 0.6))[greedy_seq]
  assert scores[0, 0] > greedy_score + 0.5


def test_length_penalty_alpha_prefers_longer_outputs():
  """EOS now (logp -1.0, length 1) vs 2 3 EOS (logp ~ -1.2, length 3): raw log-prob prefers
  the short one, alpha=1 divides the long one by 8/6 and prefers it."""
  vocab, max_len = 6, 4
  table = crafted_table(vocab, max_len, {
      (): {EOS: np.exp(-1.0), 2: 0.5}, (2,): {3: 0.8}, (2, 3): {EOS: 0.75}}, default_eos=0.1)
  for alpha, expected in [(0.0, [EOS, 0, 0, 0]), (1.0, [2, 3, EOS, 0])]:
    seqs, _ = run_beam(table, beam_size=3, max_len=max_len, alpha=alpha)
    np.testing.assert_array_equal(seqs[0, 0], expected, err_msg=f'alpha={alpha}')
    assert brute_force(table[0], max_len, alpha)[0][1] == tuple(t for t in expected if t)


def test_live_beam_that_can_still_win_by_length_is_not_stopped_early():
  """With alpha=1 a full finished set ([EOS], score -1.0) does not stop a live beam of
  log-prob -1.2: at length 3 it can score -1.2 / (8/6) > -1.0, and it does (2 3 EOS)."""
  vocab, max_len = 6, 4
  table = crafted_table(vocab, max_len, {
      (): {EOS: np.exp(-1.0), 2: np.exp(-1.2)}, (2,): {3: 0.99}, (2, 3): {EOS: 0.99}})
  seqs, scores = run_beam(table, beam_size=1, max_len=max_len, alpha=1.0)
  best_score, best_seq = brute_force(table[0], max_len, alpha=1.0)[0]
  assert best_seq == (2, 3, EOS)
  np.testing.assert_array_equal(seqs[0, 0], [2, 3, EOS, 0])
  np.testing.assert_allclose(scores[0, 0], best_score, rtol=1e-5)


def test_eos_padding_and_sorted_scores():
  vocab, max_len, batch, beam = 7, 6, 3, 4
  table = np.random.RandomState(1).normal(size=(batch, 1, vocab))
  # Token 0 is near impossible, so any 0 in the output is padding.
  table[..., 0] = -30.0
  table[..., EOS] += 1.0
  stationary = lambda ids, cache: (jnp.asarray(table[:, 0])[cache['row']], cache)
  seqs, scores = bs.beam_search(stationary, init_cache(batch), batch_size=batch, beam_size=beam,
                                max_decode_len=max_len, eos_id=EOS)
  seqs, scores = np.asarray(seqs), np.asarray(scores)
  assert seqs.shape == (batch, beam, max_len) and seqs.dtype == np.int32
  assert np.all(scores[:, :-1] >= scores[:, 1:])
  assert np.isfinite(scores).sum() > batch
  for row, k in itertools.product(range(batch), range(beam)):
    seq = list(seqs[row, k])
    if not np.isfinite(scores[row, k]):  # an empty slot of the finished set
      assert not any(seq)
      continue
    assert seq.count(EOS) == 1, seq
    end = seq.index(EOS)
    assert 0 not in seq[:end] and all(t == 0 for t in seq[end + 1:])


def test_no_finished_beam_returns_alive_beams():
  vocab, max_len = 5, 3
  table = np.random.RandomState(2).normal(size=(2, (vocab + 1) ** max_len, vocab))
  table[..., EOS] = -1e9  # EOS is impossible
  seqs, scores = run_beam(table, beam_size=3, max_len=max_len, alpha=0.6)
  assert np.all(np.asarray(seqs) != EOS) and np.all(np.isfinite(scores))
  logp = log_softmax(table[0])
  seq = [int(t) for t in seqs[0, 0]]
  total = sum(logp[prefix_code(seq[:i], vocab), t] for i, t in enumerate(seq))
  np.testing.assert_allclose(scores[0, 0], total / ((5 + max_len) / 6) ** 0.6, rtol=1e-5)
  assert np.all(np.diff(np.asarray(scores), axis=1) <= 0)


def test_early_stopping_skips_hopeless_steps():
  """EOS is almost certain everywhere: once the finished set is full nothing alive can win, so
  the loop must stop long before max_decode_len."""
  calls = []
  table = np.tile(dist_logits({EOS: 0.999}, 5), (1, 1, 1))

  def tokens_to_logits(ids, cache):
    jax.debug.callback(lambda: calls.append(1))
    return jnp.asarray(table[:, 0])[cache['row']], cache

  seqs, _ = bs.beam_search(tokens_to_logits, init_cache(1), batch_size=1, beam_size=2,
                           max_decode_len=10, eos_id=EOS)
  jax.block_until_ready(seqs)
  # Step 1 finishes one beam (EOS) and keeps one alive, so filling the
  # finished set takes a second step: fewer calls mean none were counted.
  assert seqs[0, 0, 0] == EOS and 2 <= len(calls) <= 3, calls


def test_jit_matches_eager():
  vocab, max_len, batch = 4, 3, 2
  table = np.random.RandomState(3).normal(size=(batch, (vocab + 1) ** max_len, vocab))
  run = lambda cache: bs.beam_search(prefix_model(table), cache, batch_size=batch, beam_size=3,
                                     max_decode_len=max_len, eos_id=EOS)
  jitted = jax.jit(run)(init_cache(batch))
  eager = run(init_cache(batch))
  np.testing.assert_array_equal(jitted[0], eager[0])
  np.testing.assert_allclose(jitted[1], eager[1], rtol=1e-6)


def test_scanned_layers_decode_as_unscanned_ones():
  """model.scan_layers stacks the decoder's cache over layers (batch on
  axis 1): the encoder-decoder's beam search expands and reorders beams on
  that axis and finds the same translations as the unscanned model with
  the same weights."""
  from configs import default  # pylint: disable=g-import-not-at-top
  from models.hf import stack_layers  # pylint: disable=g-import-not-at-top
  import tasks  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.decode.beam_size = 4
  task = tasks.get_task(config)
  params = jax.jit(task.init_variables)(jax.random.key(0))['params']
  batch = next(iter(task.eval_batches(8)))
  config.model.scan_layers = True
  scanned = tasks.get_task(config)
  unscanned_ids = np.asarray(jax.jit(task.predict)(params, batch))
  scanned_ids = np.asarray(jax.jit(scanned.predict)(stack_layers(params),
                                                     batch))
  np.testing.assert_array_equal(scanned_ids, unscanned_ids)
  assert len(set(map(tuple, unscanned_ids))) > 1  # not one constant output
