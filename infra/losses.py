"""Losses return (sum, count): divide only after summing over devices/hosts,
so any device count computes the same step."""
import jax
import jax.numpy as jnp


def cross_entropy_sums(logits, targets, weights, label_smoothing: float = 0.0):
  """Label-smoothed cross entropy, summed over weighted positions.

  logits: [..., vocab] float; targets: [...] int; weights: [...] (0 ignores a
  position, e.g. padding). Smoothing spreads `label_smoothing` uniformly over
  the other classes (Szegedy et al. 2016); the constant entropy of the smoothed
  distribution is subtracted so that a perfect prediction scores 0.
  Returns dict(loss=sum, weight=sum of weights, correct=sum of argmax hits).
  """
  vocab = logits.shape[-1]
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  target_log_prob = jnp.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
  if label_smoothing > 0:
    confidence = 1.0 - label_smoothing
    low = label_smoothing / (vocab - 1)
    smooth = confidence * target_log_prob + low * (
        log_probs.sum(-1) - target_log_prob)
    normalizer = -(confidence * jnp.log(confidence) +
                   (vocab - 1) * low * jnp.log(low + 1e-20))
    loss = -smooth - normalizer
  else:
    loss = -target_log_prob
  weights = weights.astype(jnp.float32)
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  return dict(loss=(loss * weights).sum(), weight=weights.sum(),
              correct=(correct * weights).sum())
