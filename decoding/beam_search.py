"""Beam search driven by a model-agnostic `tokens_to_logits(ids, cache)`
callback.

The callback has the signature

    tokens_to_logits(ids: int32[batch, 1], cache)
        -> (logits: float32[batch, vocab], new_cache)

where `cache` is any pytree (a Flax 'cache' collection). Its array leaves have
the batch dimension first, except leaves with ndim 0 (e.g. a shared
`cache_index`), which belong to the whole batch and are passed through
untouched when beams are expanded or reordered. A model whose layers are
scanned (`model.scan_layers`) stacks its cache over layers: batch is then
axis 1 (`cache_batch_axis=1`), and the per-layer `cache_index` of shape
[layers] is shared.

The search keeps two sets per batch row (tensor2tensor / flax wmt style):
`alive` beams that have not emitted EOS and compete on raw log-probability, and
`finished` beams that have, ranked by the GNMT length-normalised score. It stops
once no alive beam can still beat the worst finished one.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

# Finite stand-in for log(0): sums and quotients of dead hypotheses stay finite
# and ordered instead of producing inf - inf = NaN. Anything below _DEAD is
# treated as impossible.
NEG_INF = -1.0e7
_DEAD = NEG_INF / 2

TokensToLogits = Callable[[jax.Array, Any], tuple[jax.Array, Any]]


def _map_batched(fn, tree, axis: int = 0):
  """Applies `fn` to every leaf with a batch axis at `axis`; leaves of no
  more than `axis` dimensions (e.g. ndim-0) are shared and kept."""
  return jax.tree.map(lambda x: x
                      if jnp.ndim(x) <= axis else fn(jnp.asarray(x)), tree)


def expand_to_beams(tree, beam_size: int, axis: int = 0):
  """Repeats each batch row `beam_size` times: leaves [batch, ...] ->
  [batch * beam, ...] (batch on `axis`).

  Rows are beam-minor (row b * beam_size + k is beam k of example b), matching
  `flatten_beams`. Works on a single array or a pytree (e.g. encoder outputs and
  masks); ndim-0 leaves are returned unchanged.
  """
  return _map_batched(lambda x: jnp.repeat(x, beam_size, axis=axis), tree,
                      axis)


def flatten_beams(tree):
  """Merges beams into the batch axis: leaves [batch, beam, ...] ->
  [batch * beam, ...]."""
  return _map_batched(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


def unflatten_beams(tree, beam_size: int):
  """Splits the batch axis: leaves [batch * beam, ...] -> [batch, beam, ...]."""
  return _map_batched(lambda x: x.reshape((-1, beam_size) + x.shape[1:]), tree)


def _gather_beams(tree, beam_indices):
  """Picks beams per row: leaves [batch, old_beam, ...], indices
  int[batch, new_beam] -> leaves [batch, new_beam, ...]."""
  rows = jnp.arange(beam_indices.shape[0])[:, None]
  return _map_batched(lambda x: x[rows, beam_indices], tree)


def _gather_flat_beams(tree, beam_indices, beam_size: int, axis: int = 0):
  """Like `_gather_beams` for flattened leaves with batch * old_beam rows on
  `axis` (leaves of no more than `axis` dimensions are shared)."""
  batch = beam_indices.shape[0]
  rows = (jnp.arange(batch)[:, None] * beam_size + beam_indices).reshape(-1)
  return _map_batched(lambda x: jnp.take(x, rows, axis=axis), tree, axis)


def length_penalty(length, alpha: float):
  """GNMT length penalty (Wu et al. 2016), ((5 + length) / 6) ** alpha;
  score = logp / lp."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0)**alpha


class _BeamState(NamedTuple):
  step: jax.Array  # int32 scalar: tokens generated so far.
  # int32[batch, beam, max_decode_len + 1]; position 0 is BOS.
  live_seqs: jax.Array
  live_logprobs: jax.Array  # float32[batch, beam], sorted best first.
  # int32[batch, beam, max_decode_len + 1]; PAD after EOS.
  finished_seqs: jax.Array
  # float32[batch, beam], length-normalised, sorted best first.
  finished_scores: jax.Array
  # bool[batch, beam]: slot holds a real finished hypothesis.
  finished_flags: jax.Array
  cache: Any  # leaves [batch * beam, ...] or ndim-0.


def beam_search(tokens_to_logits: TokensToLogits,
                cache,
                *,
                batch_size: int,
                beam_size: int,
                max_decode_len: int,
                eos_id: int = 1,
                bos_id: int = 0,
                alpha: float = 0.6,
                cache_batch_axis: int = 0):
  """Beam search with GNMT length normalisation and alive/finished early
  stopping.

  Args:
    tokens_to_logits: callback (ids int32[batch * beam, 1], cache) -> (logits
      float32[batch * beam, vocab], new cache). Called once per step with the
      last token of each beam.
    cache: pytree for `batch_size` rows (leaves [batch, ...], or ndim-0 shared
      leaves); it is expanded to batch * beam rows here. Encoder outputs the
      callback closes over must be expanded by the caller with
      `expand_to_beams`.
    batch_size, beam_size: static sizes.
    max_decode_len: static maximum number of generated tokens, EOS included.
    eos_id: token that finishes a hypothesis.
    bos_id: token fed at the first step (0 for encoder-decoder models, where it
      doubles as PAD).
    alpha: length penalty exponent (>= 0); 0 ranks by raw log-probability,
      larger values favour longer outputs.
    cache_batch_axis: the batch axis of the cache's leaves (1 for a cache
      stacked over scanned layers); leaves with no more dimensions than it
      are shared by all rows.

  Returns:
    sequences: int32[batch, beam, max_decode_len], best beam first, without
      BOS, ending with EOS and padded with 0 after it. A row where no
      hypothesis emitted EOS returns its alive beams (all of length
      max_decode_len) instead.
    scores: float32[batch, beam], log_prob / length_penalty(length), sorted
      descending; -inf for slots that hold no hypothesis (their sequences are
      all 0).
  """
  seq_len = max_decode_len + 1
  # Only beam 0 starts alive: all beams would begin identical, and K copies of
  # one hypothesis would crowd out the K distinct continuations of the first
  # step.
  first = jnp.array([0.0] + [NEG_INF] * (beam_size - 1), jnp.float32)
  init = _BeamState(step=jnp.array(0, jnp.int32),
                    live_seqs=jnp.zeros((batch_size, beam_size, seq_len),
                                        jnp.int32).at[:, :, 0].set(bos_id),
                    live_logprobs=jnp.tile(first, (batch_size, 1)),
                    finished_seqs=jnp.zeros((batch_size, beam_size, seq_len),
                                            jnp.int32),
                    finished_scores=jnp.full((batch_size, beam_size), NEG_INF,
                                             jnp.float32),
                    finished_flags=jnp.zeros((batch_size, beam_size),
                                             jnp.bool_),
                    cache=expand_to_beams(cache, beam_size, cache_batch_axis))

  def can_improve(state: _BeamState):
    live_valid = state.live_logprobs > _DEAD
    # Log-probs only fall as tokens are added, so a live beam's final score is
    # at most its current log-prob over the largest penalty among the lengths
    # it can still reach.
    best_penalty = jnp.maximum(length_penalty(state.step + 1, alpha),
                               length_penalty(max_decode_len, alpha))
    best_live = jnp.max(jnp.where(live_valid, state.live_logprobs, NEG_INF),
                        axis=1) / best_penalty
    worst_finished = jnp.min(state.finished_scores, axis=1)
    # Until the finished set is full, any live beam could still enter it.
    full = jnp.all(state.finished_flags, axis=1)
    row_open = jnp.any(live_valid, axis=1) & (~full |
                                              (best_live > worst_finished))
    return (state.step < max_decode_len) & jnp.any(row_open)

  def step_fn(state: _BeamState) -> _BeamState:
    ids = flatten_beams(
        lax.dynamic_slice_in_dim(state.live_seqs, state.step, 1, axis=2))
    logits, cache = tokens_to_logits(ids, state.cache)
    vocab = logits.shape[-1]
    logprobs = unflatten_beams(jax.nn.log_softmax(logits.astype(jnp.float32)),
                               beam_size)
    flat = (state.live_logprobs[:, :, None] + logprobs).reshape(
        batch_size, beam_size * vocab)
    # 2 * beam candidates leave at least beam_size non-EOS ones even if
    # beam_size end here.
    cand_logprobs, cand_idx = lax.top_k(flat,
                                        min(2 * beam_size, beam_size * vocab))
    cand_beams, cand_tokens = cand_idx // vocab, cand_idx % vocab
    new_len = state.step + 1
    cand_seqs = lax.dynamic_update_slice_in_dim(_gather_beams(
        state.live_seqs, cand_beams),
                                                cand_tokens[:, :, None],
                                                new_len,
                                                axis=2)
    cand_eos = cand_tokens == eos_id

    live_logprobs, live_pos = lax.top_k(
        jnp.where(cand_eos, NEG_INF, cand_logprobs), beam_size)
    live_seqs = _gather_beams(cand_seqs, live_pos)
    live_src = _gather_beams(cand_beams, live_pos)
    cache = _gather_flat_beams(cache, live_src, beam_size, cache_batch_axis)

    # As fairseq: only an EOS ranked within the top beam_size may finish, so
    # beam search of width 1 is greedy search (with alpha=0, where a longer
    # hypothesis can never overtake a finished one).
    in_top_beam = jnp.arange(cand_tokens.shape[1])[None, :] < beam_size
    newly_finished = cand_eos & (cand_logprobs > _DEAD) & in_top_beam
    new_scores = jnp.where(newly_finished,
                           cand_logprobs / length_penalty(new_len, alpha),
                           NEG_INF)
    scores = jnp.concatenate([state.finished_scores, new_scores], axis=1)
    flags = jnp.concatenate([state.finished_flags, newly_finished], axis=1)
    seqs = jnp.concatenate([state.finished_seqs, cand_seqs], axis=1)
    finished_scores, finished_pos = lax.top_k(scores, beam_size)
    return _BeamState(step=new_len,
                      live_seqs=live_seqs,
                      live_logprobs=live_logprobs,
                      finished_seqs=_gather_beams(seqs, finished_pos),
                      finished_scores=finished_scores,
                      finished_flags=_gather_beams(flags, finished_pos),
                      cache=cache)

  state = lax.while_loop(can_improve, step_fn, init)

  # A row without finished hypotheses can only exist when the loop ran to
  # max_decode_len, so every alive beam there has length state.step.
  any_finished = jnp.any(state.finished_flags, axis=1, keepdims=True)
  live_valid = state.live_logprobs > _DEAD
  valid = jnp.where(any_finished, state.finished_flags, live_valid)
  scores = jnp.where(any_finished, state.finished_scores,
                     state.live_logprobs / length_penalty(state.step, alpha))
  scores = jnp.where(valid, scores, -jnp.inf)
  seqs = jnp.where(any_finished[:, :, None], state.finished_seqs,
                   state.live_seqs)
  seqs = jnp.where(valid[:, :, None], seqs, 0)
  return seqs[:, :, 1:], scores
