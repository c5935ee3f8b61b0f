"""Losses return (sum, count): divide only after summing over devices/hosts,
so any device count computes the same step."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


def cross_entropy_sums(logits, targets, weights, label_smoothing: float = 0.0):
  """Label-smoothed cross entropy, summed over weighted positions.

  logits: [..., vocab] float; targets: [...] int; weights: [...] (0 ignores a
  position, e.g. padding). Smoothing keeps 1 - `label_smoothing` on the
  target and spreads `label_smoothing` uniformly over the other K - 1
  classes (tensor2tensor's variant; Szegedy et al. 2016 spread it over all
  K); the constant entropy of the smoothed distribution is subtracted so
  that a perfect prediction scores 0.
  Returns dict(loss=sum, weight=sum of weights, correct=sum of hits), a hit
  being a target logit equal to the row maximum (argmax up to ties).
  The gradient of the loss is taken in closed form, weights * (softmax -
  smoothed one-hot), in one elementwise pass over the logits, where
  autodiff would scatter a one-hot and run the softmax backward apart.
  """
  sums = _logit_loss_sums(logits, targets, weights.astype(jnp.float32),
                          float(label_smoothing))
  return dict(loss=sums[0], weight=sums[1], correct=sums[2])


def _logit_sums_and_grad(logits, targets, weights, label_smoothing,
                         with_grad: bool):
  """([loss, weight, hits] sums, d loss / d logits or None)."""
  vocab = logits.shape[-1]
  confidence, low, normalizer = _smoothing_constants(vocab, label_smoothing)
  logits = logits.astype(jnp.float32)
  top = logits.max(-1, keepdims=True)
  exp = jnp.exp(logits - top)
  total = exp.sum(-1, keepdims=True)
  log_z = (top + jnp.log(total))[..., 0]
  target_logit = jnp.take_along_axis(logits, targets[..., None], -1)[..., 0]
  target_log_prob = target_logit - log_z
  if label_smoothing > 0:
    sum_log_probs = logits.sum(-1) - vocab * log_z
    loss = -(confidence * target_log_prob +
             low * (sum_log_probs - target_log_prob)) - normalizer
  else:
    loss = -target_log_prob
  # A variadic argmax reduce over the vocabulary is slow on CPU.
  correct = (target_logit >= top[..., 0]).astype(jnp.float32)
  sums = jnp.stack([(loss * weights).sum(), weights.sum(),
                    (correct * weights).sum()])
  if not with_grad:
    return sums, None
  one_hot = jnp.arange(vocab) == targets[..., None]
  d_logits = (exp / total - low - (confidence - low) * one_hot) * weights[
      ..., None]
  return sums, d_logits


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _logit_loss_sums(logits, targets, weights, label_smoothing):
  return _logit_sums_and_grad(logits, targets, weights, label_smoothing,
                              False)[0]


def _logit_loss_fwd(logits, targets, weights, label_smoothing):
  sums, d_logits = _logit_sums_and_grad(logits, targets, weights,
                                        label_smoothing, True)
  return sums, (d_logits.astype(logits.dtype), targets, weights)


def _logit_loss_bwd(label_smoothing, residuals, g):
  del label_smoothing
  d_logits, targets, weights = residuals
  # Only the loss (sums[0]) is differentiable; weight and hit counts are not.
  return ((g[0] * d_logits).astype(d_logits.dtype),
          np.zeros(targets.shape, jax.dtypes.float0), jnp.zeros_like(weights))


_logit_loss_sums.defvjp(_logit_loss_fwd, _logit_loss_bwd)


def _smoothing_constants(vocab: int, label_smoothing: float):
  """(confidence, low, normalizer) of cross_entropy_sums' smoothed target."""
  if label_smoothing <= 0:
    return 1.0, 0.0, 0.0
  confidence = 1.0 - label_smoothing
  low = label_smoothing / (vocab - 1)
  normalizer = -(confidence * math.log(confidence) +
                 (vocab - 1) * low * math.log(low + 1e-20))
  return confidence, low, normalizer


def _chunk_sums(hidden, table, targets, weights, label_smoothing,
                with_grads: bool):
  """Loss sums of one chunk [n, d] and, optionally, d loss / d hidden, table.

  The gradient of a softmax cross entropy is known in closed form,
  softmax(logits) - smoothed one-hot, so it is taken here, while the chunk's
  logits are still in cache, instead of storing them for a backward pass.
  """
  logits = jnp.dot(hidden, table.astype(hidden.dtype).T,
                   preferred_element_type=jnp.float32)
  sums, d_logits = _logit_sums_and_grad(logits, targets, weights,
                                        label_smoothing, with_grads)
  if not with_grads:
    return sums, None
  d_logits = d_logits.astype(hidden.dtype)
  d_hidden = jnp.dot(d_logits, table.astype(hidden.dtype),
                     preferred_element_type=jnp.float32)
  d_table = jnp.dot(d_logits.T, hidden, preferred_element_type=jnp.float32)
  return sums, (d_hidden, d_table)


def _chunks(hidden, targets, weights, chunk_length: int):
  """[b, t, ...] -> [t / chunk_length, b * chunk_length, ...] (padded)."""
  b, t = targets.shape
  pad = -t % chunk_length
  if pad:
    hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
    targets = jnp.pad(targets, ((0, 0), (0, pad)))
    weights = jnp.pad(weights, ((0, 0), (0, pad)))
  n = (t + pad) // chunk_length
  # Chunks run along the sequence so that the batch axis, the one sharded
  # over devices, stays whole inside every chunk.
  split = lambda x: jnp.moveaxis(
      x.reshape((b, n, chunk_length) + x.shape[2:]), 1, 0).reshape(
          (n, b * chunk_length) + x.shape[2:])
  return split(hidden), split(targets), split(weights.astype(jnp.float32))


def _fused_sums(hidden, table, targets, weights, label_smoothing,
                chunk_length, with_grads):
  xs = _chunks(hidden, targets, weights, chunk_length)
  if not with_grads:
    sums = jax.lax.map(lambda x: _chunk_sums(*x[:1], table, *x[1:],
                                             label_smoothing, False)[0], xs)
    return sums.sum(0), None

  def body(d_table, x):
    h, t, w = x
    sums, (d_h, d_t) = _chunk_sums(h, table, t, w, label_smoothing, True)
    return d_table + d_t, (sums, d_h)
  d_table, (sums, d_hidden) = jax.lax.scan(
      body, jnp.zeros(table.shape, jnp.float32), xs)
  b, t, d = hidden.shape
  n, rows = d_hidden.shape[:2]
  d_hidden = jnp.moveaxis(d_hidden.reshape(n, b, rows // b, d), 0, 1)
  d_hidden = d_hidden.reshape(b, -1, d)[:, :t]
  return sums.sum(0), (d_hidden, d_table)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _fused_output_sums(hidden, table, targets, weights, label_smoothing,
                       chunk_length):
  return _fused_sums(hidden, table, targets, weights, label_smoothing,
                     chunk_length, False)[0]


def _fused_output_fwd(hidden, table, targets, weights, label_smoothing,
                      chunk_length):
  sums, grads = _fused_sums(hidden, table, targets, weights, label_smoothing,
                            chunk_length, True)
  d_hidden, d_table = grads
  return sums, (d_hidden.astype(hidden.dtype), d_table.astype(table.dtype),
                targets, weights)


def _fused_output_bwd(label_smoothing, chunk_length, residuals, g):
  d_hidden, d_table, targets, weights = residuals
  # Only the loss (sums[0]) is differentiable; weight and hit counts are not.
  return ((g[0] * d_hidden).astype(d_hidden.dtype),
          (g[0] * d_table).astype(d_table.dtype),
          np.zeros(targets.shape, jax.dtypes.float0),
          jnp.zeros_like(weights))


_fused_output_sums.defvjp(_fused_output_fwd, _fused_output_bwd)


def fused_output_cross_entropy_sums(hidden, table, targets, weights,
                                    label_smoothing: float = 0.0,
                                    chunk_length: int = 8):
  """cross_entropy_sums(hidden @ table.T, ...) without the [b, t, vocab] logits.

  hidden: [b, t, d] final hidden states; table: [vocab, d] output layer
  (the tied embedding, or the output kernel transposed). The sequence is cut
  into chunks of `chunk_length` positions; each chunk's logits, loss and
  gradient are computed together and dropped (the fused linear
  cross-entropy of memory-efficient LM training). Peak memory falls from
  b*t*vocab floats to b*chunk_length*vocab and the logits are never written
  to and re-read from main memory. Gradients flow to hidden and table.
  """
  sums = _fused_output_sums(hidden, table, targets,
                            weights.astype(jnp.float32),
                            float(label_smoothing), int(chunk_length))
  return dict(loss=sums[0], weight=sums[1], correct=sums[2])


def next_token_sums(outputs, table, targets, weights, label_smoothing: float,
                    chunk_length: int):
  """The token loss of a model called with return_hidden=bool(chunk_length):
  `outputs` are logits (chunk_length 0) or final hidden states, which
  fused_output_cross_entropy_sums turns into the loss with the [vocab, d]
  output `table` (only read when fused)."""
  if chunk_length:
    return fused_output_cross_entropy_sums(outputs, table, targets, weights,
                                           label_smoothing, chunk_length)
  return cross_entropy_sums(outputs, targets, weights, label_smoothing)
