"""Optimiser and learning-rate schedule from `config.optimizer`."""
import jax
import jax.numpy as jnp
import optax

from errors import UserError


def learning_rate_schedule(opt_config, total_steps: int):
  """step -> learning rate.

  'rsqrt': Vaswani et al. 2017, eq. 3: linear warmup, then decay with the
    inverse square root of the step; `learning_rate` is the peak reached at
    the end of warmup (the paper's base model peaks at
    d_model^-0.5 * warmup^-0.5 = 6.99e-4 with 4000 warmup steps).
  'cosine': linear warmup to the peak, cosine decay to `end_learning_rate`.
  'constant': linear warmup, then constant.
  """
  peak, warmup = opt_config.learning_rate, max(opt_config.warmup_steps, 1)
  kind = opt_config.schedule
  if kind == 'rsqrt':
    def schedule(step):
      step = jnp.maximum(jnp.asarray(step, jnp.float32) + 1.0, 1.0)
      return peak * jnp.minimum(step / warmup, jnp.sqrt(warmup / step))
    return schedule
  if kind == 'cosine':
    return optax.warmup_cosine_decay_schedule(
        0.0, peak, warmup, max(total_steps, warmup + 1),
        end_value=opt_config.end_learning_rate)
  if kind == 'constant':
    return optax.join_schedules(
        [optax.linear_schedule(0.0, peak, warmup), optax.constant_schedule(peak)],
        [warmup])
  raise UserError(f'optimizer.schedule={kind!r} is not one of rsqrt, cosine, '
                  'constant')


def make_optimizer(opt_config, total_steps: int):
  """'adam' or 'adamw' (decoupled weight decay) with `b1`, `b2`, `eps` of
  `opt_config` (the base config's defaults are the paper's 0.9, 0.98,
  1e-9), and global-norm gradient clipping if `grad_clip_norm` > 0."""
  schedule = learning_rate_schedule(opt_config, total_steps)
  if opt_config.name == 'adam':
    opt = optax.adam(schedule, b1=opt_config.b1, b2=opt_config.b2,
                     eps=opt_config.eps)
  elif opt_config.name == 'adamw':
    mask = _matrices if opt_config.decay_only_matrices else None
    opt = optax.adamw(schedule, b1=opt_config.b1, b2=opt_config.b2,
                      eps=opt_config.eps, weight_decay=opt_config.weight_decay,
                      mask=mask)
  else:
    raise UserError(f'optimizer.name={opt_config.name!r} is not one of adam, '
                    'adamw')
  if opt_config.grad_clip_norm > 0:
    opt = optax.chain(clip_by_global_norm(opt_config.grad_clip_norm), opt)
  return opt, schedule


def clip_by_global_norm(max_norm: float):
  """optax.clip_by_global_norm with the norm that train_step has already
  computed (extra argument `grad_norm=`), applied as one multiplication.

  optax's own computes the norm a second time and divides every gradient
  by it; XLA does not repeat a divide in each consumer, so it writes every
  clipped gradient out whole before Adam reads it. A multiplication by a
  scalar fuses into Adam's loops instead (with the mean in train_step;
  measured with experiments/optimizer_benchmark.py:
  experiments/performance.md, section 8, change 1). Same state (EmptyState) as
  optax's, so checkpoints keep their layout.
  """
  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, grad_norm, **extra_args):
    del params, extra_args
    scale = jnp.minimum(1.0, max_norm / grad_norm)
    return jax.tree.map(lambda g: g * scale.astype(g.dtype), updates), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _matrices(params):
  """True for the weight matrices (kernels, embeddings): GPT-2 and nanoGPT
  decay only those, not biases and LayerNorm scales. By name, not by rank,
  so layers stacked by nn.scan (an extra leading axis) are judged alike."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], 'key', None) in ('kernel',
                                                         'embedding'),
      params)
