"""Greedy decoding and sampling against fake `tokens_to_logits` callbacks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from decoding import sampling

EOS = 1


def markov_model(table, fed=None):
  """Callback with logits table[row, step, previous token]; table float[batch, steps, vocab,
  vocab]. The cache holds a shared scalar step index and a per-row `row` leaf; `fed`, if a
  list, records (step, ids) of every call."""
  table = jnp.asarray(table, jnp.float32)

  def tokens_to_logits(ids, cache):
    assert cache['index'].ndim == 0
    if fed is not None:
      jax.debug.callback(lambda i, x: fed.append((int(i), np.asarray(x)[:, 0])),
                         cache['index'], ids)
    logits = table[cache['row'], cache['index'], ids[:, 0]]
    return logits, dict(cache, index=cache['index'] + 1)

  return tokens_to_logits


def init_cache(batch):
  return dict(index=jnp.array(0, jnp.int32), row=jnp.arange(batch, dtype=jnp.int32))


def random_table(batch, steps, vocab, seed=0, eos_bias=0.0):
  table = np.random.RandomState(seed).normal(size=(batch, steps, vocab, vocab)) * 2
  table[..., EOS] += eos_bias
  return table


def reference_greedy(table, max_len, stop_ids=(EOS,), bos=0):
  """Plain Python greedy decoding straight from the table."""
  out = np.zeros((table.shape[0], max_len), np.int32)
  for row in range(table.shape[0]):
    prev = bos
    for step in range(max_len):
      prev = int(np.argmax(table[row, step, prev]))
      out[row, step] = prev
      if prev in stop_ids:
        break
  return out


def constant_model(logits):
  """Every row sees the same logits float[vocab] at every step; no cache."""
  return lambda ids, cache: (jnp.broadcast_to(jnp.asarray(logits), (ids.shape[0], len(logits))),
                             cache)


def frequencies(tokens, vocab):
  return np.bincount(np.asarray(tokens).ravel(), minlength=vocab) / tokens.size


def softmax(x):
  e = np.exp(x - np.max(x))
  return e / e.sum()


def test_greedy_matches_reference_and_pads_after_eos():
  batch, max_len, vocab = 4, 8, 6
  table = random_table(batch, max_len, vocab, eos_bias=1.0)
  table[..., 0] = -30.0  # no PAD generated, so zeros in the output are padding
  got = np.asarray(sampling.greedy_decode(markov_model(table), init_cache(batch),
                                          batch_size=batch, max_decode_len=max_len, eos_id=EOS))
  expected = reference_greedy(table, max_len)
  np.testing.assert_array_equal(got, expected)
  assert (got == EOS).any(axis=1).sum() >= 2  # the table really exercises early EOS
  for row in got:
    if EOS in row:
      end = list(row).index(EOS)
      assert not row[end + 1:].any() and row[:end].all()


@pytest.mark.parametrize('kwargs', [dict(temperature=0.0), dict(top_k=1),
                                    dict(top_p=1e-6), dict(top_k=3, top_p=1e-6, temperature=2.0)])
def test_degenerate_sampling_is_greedy(kwargs):
  batch, max_len, vocab = 5, 7, 6
  table = random_table(batch, max_len, vocab, seed=1, eos_bias=0.5)
  out = sampling.sample(markov_model(table), init_cache(batch), jax.random.key(3), prompt=None,
                        batch_size=batch, max_decode_len=max_len, **kwargs)
  expected = reference_greedy(table, max_len)
  np.testing.assert_array_equal(out['tokens'], expected)
  lengths = [list(r).index(EOS) + 1 if EOS in r else max_len for r in expected]
  np.testing.assert_array_equal(out['lengths'], lengths)


LOGITS = np.array([1.5, 0.2, -0.3, 2.0, 0.9, -1.0, 0.0, 1.1], np.float32)
N = 40_000  # rows; the std of a frequency is <= sqrt(0.25 / N) = 0.0025


def sample_once(rng_seed, **kwargs):
  out = sampling.sample(constant_model(LOGITS), {}, jax.random.key(rng_seed), prompt=None,
                        batch_size=N, max_decode_len=1, stop_ids=(), **kwargs)
  return out['tokens']


@pytest.mark.parametrize('temperature', [1.0, 0.5, 2.0])
def test_sampling_frequencies_match_softmax(temperature):
  freq = frequencies(sample_once(0, temperature=temperature), len(LOGITS))
  np.testing.assert_allclose(freq, softmax(LOGITS / temperature), atol=0.012)


def test_top_k_frequencies_and_support():
  k, temperature = 3, 0.7
  freq = frequencies(sample_once(1, top_k=k, temperature=temperature), len(LOGITS))
  top = np.argsort(-LOGITS)[:k]
  expected = np.zeros_like(freq)
  expected[top] = softmax(LOGITS[top] / temperature)
  assert np.all(freq[np.setdiff1d(np.arange(len(LOGITS)), top)] == 0)
  np.testing.assert_allclose(freq, expected, atol=0.012)


def test_top_p_keeps_smallest_set_reaching_mass():
  probs = softmax(LOGITS)
  order = np.argsort(-probs)
  # Just above the mass of the best two: the nucleus needs exactly three tokens.
  top_p = probs[order[:2]].sum() + 0.01
  freq = frequencies(sample_once(2, top_p=top_p), len(LOGITS))
  expected = np.zeros_like(freq)
  expected[order[:3]] = probs[order[:3]] / probs[order[:3]].sum()
  assert np.all(freq[order[3:]] == 0)
  np.testing.assert_allclose(freq, expected, atol=0.012)


def test_prompts_of_different_lengths_are_forced_and_fed():
  batch, max_len, vocab = 3, 9, 7
  table = random_table(batch, max_len, vocab, seed=2)
  table[..., EOS] = -30.0  # run every row to the end so every step is observable
  prompt = np.array([[5, 3, 0, 0], [2, 6, 4, 3], [0, 0, 0, 0]], np.int32)
  prompt_len = [2, 4, 0]
  fed = []
  out = sampling.sample(markov_model(table, fed), init_cache(batch), jax.random.key(0),
                        prompt=prompt, max_decode_len=max_len, temperature=0.0)
  jax.effects_barrier()
  tokens = np.asarray(out['tokens'])
  for row, n in enumerate(prompt_len):
    np.testing.assert_array_equal(tokens[row, :n], prompt[row, :n])
  # The callback saw BOS, then exactly the emitted tokens (prompt first), one per step.
  fed = np.stack([ids for _, ids in sorted(fed, key=lambda f: f[0])], axis=1)
  np.testing.assert_array_equal(fed[:, 0], 0)
  np.testing.assert_array_equal(fed[:, 1:], tokens[:, :-1])
  # After the prompt, generation continues greedily from the last prompt token.
  for row, n in enumerate(prompt_len):
    prev = fed[row, n]
    for step in range(n, max_len):
      assert tokens[row, step] == np.argmax(table[row, step, prev])
      prev = tokens[row, step]
  np.testing.assert_array_equal(out['lengths'], max_len)


def test_stop_ids_end_generation_but_not_inside_prompt():
  batch, max_len, vocab = 2, 6, 5
  table = np.zeros((batch, max_len, vocab, vocab))
  table[:, :, :, 4] = 5.0  # greedy always emits token 4 ...
  table[:, 2:, :, 3] = 6.0  # ... until step 2, where 3 takes over
  prompt = np.array([[3, 2], [2, 0]], np.int32)  # row 0's prompt contains the stop id 3
  out = sampling.sample(markov_model(table), init_cache(batch), jax.random.key(0),
                        prompt=prompt, max_decode_len=max_len, temperature=0.0, stop_ids=(3, EOS),
                        pad_id=0)
  np.testing.assert_array_equal(out['tokens'], [[3, 2, 3, 0, 0, 0], [2, 4, 3, 0, 0, 0]])
  np.testing.assert_array_equal(out['lengths'], [3, 3])


def test_custom_bos_is_fed_first():
  fed = []
  table = random_table(1, 3, 6, seed=4)
  sampling.sample(markov_model(table, fed), init_cache(1), jax.random.key(0), prompt=None,
                  batch_size=1, max_decode_len=3, temperature=0.0, stop_ids=(), bos_id=5)
  jax.effects_barrier()
  assert min(fed, key=lambda f: f[0])[1][0] == 5


def test_jit_compiles_and_matches_eager():
  batch, max_len, vocab = 3, 6, 6
  table = random_table(batch, max_len, vocab, seed=5, eos_bias=0.5)
  prompt = jnp.array([[2, 3], [4, 0], [0, 0]], jnp.int32)

  def run(cache, rng, prompt):
    return sampling.sample(markov_model(table), cache, rng, prompt=prompt,
                           max_decode_len=max_len, temperature=0.8, top_k=4, top_p=0.9)

  jitted = jax.jit(run)(init_cache(batch), jax.random.key(7), prompt)
  eager = run(init_cache(batch), jax.random.key(7), prompt)
  np.testing.assert_array_equal(jitted['tokens'], eager['tokens'])
  np.testing.assert_array_equal(jitted['tokens'][:2, :2], [[2, 3], [4, eager['tokens'][1, 1]]])
  greedy = jax.jit(lambda c: sampling.greedy_decode(markov_model(table), c, batch_size=batch,
                                                    max_decode_len=max_len))(init_cache(batch))
  np.testing.assert_array_equal(greedy, reference_greedy(table, max_len))
