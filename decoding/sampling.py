"""Greedy decoding and temperature / top-k / top-p sampling from a
`tokens_to_logits` callback.

The callback contract is the one of `decoding.beam_search`:

    tokens_to_logits(ids: int32[batch, 1], cache)
        -> (logits: float32[batch, vocab], new_cache)

The loop feeds exactly one token per step, starting from `bos_id`. While a row
is still inside its prompt the next prompt token is forced instead of sampled
(t5x temperature_sample style), so prompts of different lengths share one batch
without left padding and the cache sees every prompt token at its own position.

Encoder-decoder models use bos_id=0 (the shifted-right PAD). A decoder-only LM
whose real BOS is another id passes it as `bos_id`, e.g. GPT-2 uses
bos_id=50256 (<|endoftext|>).
"""

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

TokensToLogits = Callable[[jax.Array, Any], tuple[jax.Array, Any]]


def sample_logits(rng,
                  logits,
                  *,
                  temperature: float = 1.0,
                  top_k: int = 0,
                  top_p=1.0):
  """Draws one token per row from `logits` float[batch, vocab] -> int32[batch].

  temperature: Python float; 0 means argmax (rng unused). top_k: static int,
  keep the k most likely tokens (0 = all). top_p: nucleus mass in (0, 1], may
  be traced; keeps the smallest set of most likely tokens whose probability is
  >= top_p, and always at least one token. Filters apply in the order
  temperature, top-k, top-p (top-p on the renormalised top-k distribution).
  """
  logits = logits.astype(jnp.float32)
  if temperature == 0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = logits / temperature
  nucleus = not (isinstance(top_p, (int, float)) and top_p >= 1.0)
  if top_k <= 0 and not nucleus:
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)
  vocab = logits.shape[-1]
  # Sampling in sorted order makes top-k exact under ties and gives top-p its
  # cumulative mass.
  sorted_logits, sorted_ids = lax.top_k(
      logits,
      min(top_k, vocab) if top_k > 0 else vocab)
  if nucleus:
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    keep = (mass_before < top_p) | (jnp.arange(sorted_logits.shape[-1]) == 0)
    sorted_logits = jnp.where(keep, sorted_logits, -jnp.inf)
  choice = jax.random.categorical(rng, sorted_logits, axis=-1)
  return jnp.take_along_axis(sorted_ids, choice[:, None],
                             axis=-1)[:, 0].astype(jnp.int32)


class _SampleState(NamedTuple):
  step: jax.Array  # int32 scalar: tokens emitted so far.
  next_ids: jax.Array  # int32[batch]: token to feed at this step.
  # int32[batch, max_decode_len]: prompt + generation, pad after stop.
  tokens: jax.Array
  lengths: jax.Array  # int32[batch]: non-pad tokens emitted so far.
  done: jax.Array  # bool[batch]: row emitted a stop token after its prompt.
  cache: Any


def sample(tokens_to_logits: TokensToLogits,
           cache,
           rng,
           *,
           prompt=None,
           max_decode_len: int,
           temperature: float = 1.0,
           top_k: int = 0,
           top_p=1.0,
           stop_ids: Sequence[int] = (1,),
           bos_id: int = 0,
           pad_id: int = 0,
           batch_size: int | None = None):
  """Autoregressive sampling with per-row prompts forced token by token.

  Step i feeds one token (bos_id at step 0, then the token emitted at step
  i - 1) and emits tokens[:, i]: the prompt token prompt[:, i] while i < the
  row's prompt length, otherwise a token drawn by `sample_logits`. A row stops
  after emitting any of `stop_ids` outside its prompt; the loop stops when
  every row has stopped or after max_decode_len steps.

  Args:
    tokens_to_logits: callback (ids int32[batch, 1], cache) -> (logits
      [batch, vocab], cache).
    cache: pytree for batch rows (leaves [batch, ...] or ndim-0 shared leaves).
    rng: PRNG key; step i uses fold_in(rng, i).
    prompt: int32[batch, P] right-padded with pad_id (P <= max_decode_len), or
      None for no prompt. A row's prompt ends at its last non-pad token, so pad
      ids inside it are kept.
    max_decode_len: static length of the output, prompt included.
    temperature, top_k, top_p: see `sample_logits`; temperature 0 is greedy.
    stop_ids: tokens that end a row's generation (kept in the output); ()
      never stops.
    bos_id: token fed at step 0 (0 for encoder-decoder; a decoder-only LM's own
      BOS id).
    pad_id: token written after a row stops and used to right-pad prompts.
    batch_size: needed only when prompt is None.

  Returns:
    dict(tokens=int32[batch, max_decode_len] prompt + generation with the stop
    token, pad_id after it; lengths=int32[batch] number of tokens before the
    padding).
  """
  if prompt is None:
    if batch_size is None:
      raise ValueError('sample() needs batch_size when prompt is None.')
    prompt = jnp.zeros((batch_size, 0), jnp.int32)
  prompt = jnp.asarray(prompt, jnp.int32)
  batch_size, prompt_width = prompt.shape
  if prompt_width > max_decode_len:
    raise ValueError(
        f'prompt width {prompt_width} > max_decode_len {max_decode_len}.')
  prompt_len = jnp.max(jnp.where(prompt != pad_id,
                                 jnp.arange(prompt_width) + 1, 0),
                       axis=1,
                       initial=0)
  # Padded to the output length so any step can read its prompt column with one
  # slice.
  prompt = jnp.pad(prompt, ((0, 0), (0, max_decode_len - prompt_width)),
                   constant_values=pad_id)
  stop_ids = jnp.asarray(tuple(stop_ids), jnp.int32).reshape(-1)

  def not_done(state: _SampleState):
    return (state.step < max_decode_len) & ~jnp.all(state.done)

  def step_fn(state: _SampleState) -> _SampleState:
    logits, cache = tokens_to_logits(state.next_ids[:, None], state.cache)
    drawn = sample_logits(jax.random.fold_in(rng, state.step),
                          logits,
                          temperature=temperature,
                          top_k=top_k,
                          top_p=top_p)
    in_prompt = state.step < prompt_len
    token = jnp.where(in_prompt,
                      lax.dynamic_index_in_dim(prompt, state.step, 1, False),
                      drawn)
    token = jnp.where(state.done, pad_id, token)
    stopped = ~in_prompt & jnp.any(token[:, None] == stop_ids[None, :], axis=1)
    return _SampleState(step=state.step + 1,
                        next_ids=token,
                        tokens=lax.dynamic_update_slice_in_dim(state.tokens,
                                                               token[:, None],
                                                               state.step,
                                                               axis=1),
                        lengths=state.lengths + (~state.done).astype(jnp.int32),
                        done=state.done | stopped,
                        cache=cache)

  init = _SampleState(step=jnp.array(0, jnp.int32),
                      next_ids=jnp.full((batch_size,), bos_id, jnp.int32),
                      tokens=jnp.full((batch_size, max_decode_len), pad_id,
                                      jnp.int32),
                      lengths=jnp.zeros((batch_size,), jnp.int32),
                      done=jnp.zeros((batch_size,), jnp.bool_),
                      cache=cache)
  state = lax.while_loop(not_done, step_fn, init)
  return dict(tokens=state.tokens, lengths=state.lengths)


def greedy_decode(tokens_to_logits: TokensToLogits,
                  cache,
                  *,
                  batch_size: int,
                  max_decode_len: int,
                  eos_id: int = 1,
                  bos_id: int = 0):
  """Argmax decoding: int32[batch, max_decode_len], without BOS, ending with
  EOS, 0 after it.

  The same loop as `sample` at temperature 0, so greedy and sampling cannot
  drift apart.
  """
  out = sample(tokens_to_logits,
               cache,
               jax.random.key(0),
               prompt=None,
               max_decode_len=max_decode_len,
               temperature=0.0,
               stop_ids=(eos_id,),
               bos_id=bos_id,
               pad_id=0,
               batch_size=batch_size)
  return out['tokens']
