"""Text generation with a decoder-only LM: cache + callback + `sampling.sample`.

The model knows no decoding and `decoding.sampling` knows no model; this module
joins them for `models.decoder_lm.DecoderLM`.
"""
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from decoding import sampling
from models.config import ModelConfig
from models.decoder_lm import DecoderLM, init_cache


def _right_pad(prompts, pad_id: int):
  if isinstance(prompts, (np.ndarray, jax.Array)):
    return jnp.asarray(prompts, jnp.int32)
  width = max(len(p) for p in prompts)
  rows = [list(p) + [pad_id] * (width - len(p)) for p in prompts]
  return jnp.asarray(rows, jnp.int32)


def generate(model_cfg: ModelConfig, params, prompts, rng, *,
             max_decode_len: int, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, stop_ids: Sequence[int] = (),
             bos_id: int = 0, pad_id: int = 0):
  """Samples continuations of `prompts` with `decoding.sampling.sample`.

  prompts: int [batch, P] right-padded with pad_id, or a list of id lists of
    different lengths (padded here). They exclude `bos_id`, which is fed
    first (GPT-2: bos_id=50256, <|endoftext|>).
  Returns dict(tokens=int32[batch, max_decode_len] prompt + continuation,
    pad_id after a stop token; lengths=int32[batch]). Not jitted here: wrap
    it in `jax.jit(..., static_argnames=...)` for repeated calls.
  """
  prompt = _right_pad(prompts, pad_id)
  model = DecoderLM(model_cfg, decode=True)
  cache = init_cache(model_cfg, prompt.shape[0], max_decode_len)

  def tokens_to_logits(ids, cache):
    logits, updates = model.apply({'params': params, 'cache': cache}, ids,
                                  mutable=['cache'])
    return logits[:, -1], updates['cache']

  return sampling.sample(
      tokens_to_logits, cache, rng, prompt=prompt,
      max_decode_len=max_decode_len, temperature=temperature, top_k=top_k,
      top_p=top_p, stop_ids=stop_ids, bos_id=bos_id, pad_id=pad_id)


def generate_sliding(model_cfg: ModelConfig, params, prompts, rng, *,
                     max_decode_len: int, temperature: float = 1.0,
                     top_k: int = 0, top_p: float = 1.0,
                     stop_ids: Sequence[int] = (), bos_id: int = 0,
                     pad_id: int = 0):
  """`generate` past the learned positions: each token is predicted from the
  last `model_cfg.max_len` tokens fed, at positions 0..max_len-1 (nanoGPT's
  crop to the block size). No KV cache: one forward pass over the window
  per token, so use it only where `generate` cannot go (max_decode_len >
  max_len with learned positions). Same arguments and result as
  `generate`; within max_len the two give the same tokens."""
  prompt = _right_pad(prompts, pad_id)
  window = model_cfg.max_len
  model = DecoderLM(model_cfg)
  # The "cache" is the window of fed tokens and their count; the count is
  # shared by all rows (ndim 0), as every row feeds one token per step.
  cache = {'tokens': jnp.full((prompt.shape[0], window), pad_id, jnp.int32),
           'count': jnp.array(0, jnp.int32)}

  def tokens_to_logits(ids, cache):
    tokens, count = cache['tokens'], cache['count']
    shifted = jnp.concatenate([tokens[:, 1:], ids], axis=1)
    placed = jax.lax.dynamic_update_slice(
        tokens, ids, (0, jnp.minimum(count, window - 1)))
    tokens = jnp.where(count >= window, shifted, placed)
    logits = model.apply({'params': params}, tokens)  # causal: later pads
    last = jnp.minimum(count, window - 1)             # do not matter
    logits = jax.lax.dynamic_index_in_dim(logits, last, 1, keepdims=False)
    return logits, {'tokens': tokens, 'count': count + 1}

  return sampling.sample(
      tokens_to_logits, cache, rng, prompt=prompt,
      max_decode_len=max_decode_len, temperature=temperature, top_k=top_k,
      top_p=top_p, stop_ids=stop_ids, bos_id=bos_id, pad_id=pad_id)
