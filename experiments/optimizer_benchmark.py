r"""Time of the optimizer update alone, at GPT-2 small's parameter shapes.

  python experiments/optimizer_benchmark.py

Rows:
- `train_step`: training.steps.train_step itself, with a task whose loss is
  linear in the parameters (its gradient is a fixed array, so the step is the
  gradient post-processing and the AdamW update of configs/gpt2_small.py:
  mean over tokens, global-norm clipping at 1.0, weight decay 0.1, under
  the CPU's non-finite guard).
- `before`: the form train_step had before session 8 (divide by the token
  count before the guard, optax.clip_by_global_norm inside it), written
  out here for comparison.
Parameters, optimizer state and gradients are float32, donated as in
training. Fastest and median of --repeats calls, after one warm-up.
"""
import functools
import pathlib
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import benchmark  # pylint: disable=g-import-not-at-top
from configs import gpt2_small  # pylint: disable=g-import-not-at-top
from training import optimizers
from training import steps as train_steps

_REPEATS = flags.DEFINE_integer('repeats', 7, 'Timed calls per row.')


def gpt2_small_shapes(d=768, d_ff=3072, layers=12, vocab=50257, positions=1024):
  shapes = {'wte': (vocab, d), 'wpe': (positions, d), 'ln_f': (d,)}
  for i in range(layers):
    shapes.update({f'{i}/qkv': (d, 3 * d), f'{i}/qkv_b': (3 * d,),
                   f'{i}/out': (d, d), f'{i}/out_b': (d,),
                   f'{i}/fc': (d, d_ff), f'{i}/fc_b': (d_ff,),
                   f'{i}/proj': (d_ff, d), f'{i}/proj_b': (d,),
                   f'{i}/ln1': (d,), f'{i}/ln2': (d,)})
  return shapes


class FixedGradientTask:
  """loss = sum(params * g): train_step's gradient is `g` itself."""

  def __init__(self, grads):
    self.grads = grads

  def loss_sums(self, params, batch, rng, train):
    del batch, rng, train
    loss = sum(jnp.vdot(p, g) for p, g in zip(jax.tree.leaves(params),
                                               jax.tree.leaves(self.grads)))
    return {'loss': loss, 'weight': jnp.float32(512.0)}


def before_step(state, grads, weight, *, optimizer):
  """The pre-session-8 form, for comparison."""
  grads = jax.tree.map(lambda g: g / jnp.maximum(weight, 1.0), grads)
  finite = jnp.isfinite(optax.tree.norm(grads))
  def update(params, opt_state):
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
  params, opt_state = jax.lax.cond(finite, update, lambda p, o: (p, o),
                                   state.params, state.opt_state)
  return state.replace(params=params, opt_state=opt_state)


def timed(step, state, *args):
  times = []
  for _ in range(_REPEATS.value + 1):
    start = time.perf_counter()
    state = jax.block_until_ready(step(state, *args))
    times.append(time.perf_counter() - start)
  times = sorted(times[1:])
  return times[0] * 1e3, times[len(times) // 2] * 1e3


def main(argv):
  del argv
  config = gpt2_small.get_config()
  shapes = gpt2_small_shapes()
  params = {k: jnp.full(s, 0.01, jnp.float32) for k, s in shapes.items()}
  grads = {k: jnp.full(s, 3.0, jnp.float32) for k, s in shapes.items()}
  n = sum(p.size for p in params.values())
  print(f'{n / 1e6:.1f}M float32 parameters (GPT-2 small); jax '
        f'{jax.__version__} on {benchmark.cpu_description()}; '
        f'{benchmark.load_text()}')
  optimizer, _ = optimizers.make_optimizer(config.optimizer, 1000)
  fresh = lambda opt: train_steps.TrainState(
      step=jnp.array(0, jnp.int32), params=jax.tree.map(jnp.copy, params),
      opt_state=opt.init(params))

  ours = jax.jit(functools.partial(
      train_steps.train_step, task=FixedGradientTask(grads),
      optimizer=optimizer,
      axis_name=None, grad_accum_steps=1), donate_argnums=0)
  step = lambda state: ours(state, {}, jax.random.key(0))[0]
  best, median = timed(step, fresh(optimizer))
  print(f'| train_step | {best:.1f} ms | {median:.1f} ms |')

  old_optimizer = optax.chain(
      optax.clip_by_global_norm(config.optimizer.grad_clip_norm),
      optax.adamw(1e-4, b1=config.optimizer.b1, b2=config.optimizer.b2,
                  eps=config.optimizer.eps,
                  weight_decay=config.optimizer.weight_decay,
                  mask=optimizers._matrices))  # pylint: disable=protected-access
  before = jax.jit(functools.partial(before_step, optimizer=old_optimizer),
                   donate_argnums=0)
  best, median = timed(before, fresh(old_optimizer), grads, jnp.float32(512))
  print(f'| before (divide, then optax clip) | {best:.1f} ms | '
        f'{median:.1f} ms |')


if __name__ == '__main__':
  app.run(main)
