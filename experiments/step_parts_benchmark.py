r"""Two parts of a training step, timed alone: dropout masks and the tied
output layer's backward pass.

  python experiments/step_parts_benchmark.py

Rows:
- `dropout`: models/dropout.apply_dropout on one attention-probability
  tensor of BERT-base at batch 8 ([8, 12, 128, 128], bf16, rate 0.1), per
  `model.dropout_prng` and `model.dropout_bits`. 'auto' is threefry4x32 on
  the CPU backend; 'jax_default' is flax's key (threefry2x32).
- `output layer`: value and gradients of the tied output layer, logits
  [t, v] = h [t, 768] @ table [v, 768].T in float32, with the table cast to
  the compute dtype as TokenEmbedding.attend does, at BERT-base (t 1,024,
  v 30,522) and GPT-2 small (t 512, v 50,257) sizes. `matmul_nt` is the
  form the output layer had before session 9 (the table gradient as
  transpose(g) @ h), `logits_matmul` the one it has now.
Median and fastest of --repeats calls, after one warm-up.
"""
import pathlib
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import benchmark  # pylint: disable=g-import-not-at-top
from models import dropout
from models import fast_dots

_REPEATS = flags.DEFINE_integer('repeats', 9, 'Timed calls per row.')


def timed(fn, *args) -> tuple[float, float]:
  """(median, fastest) ms of jitted fn(*args)."""
  fn = jax.jit(fn)
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  times.sort()
  return times[len(times) // 2] * 1e3, times[0] * 1e3


def dropout_rows():
  x = jnp.ones((8, 12, 128, 128), jnp.bfloat16)
  print('| dropout [8, 12, 128, 128] bf16 | bits | median ms | fastest ms |')
  print('|---|---:|---:|---:|')
  # model.dropout_prng 'jax_default' and 'auto', as fast_paths resolves them
  for prng, impl in (('jax_default', None), ('auto', 'threefry4x32')):
    for bits in (32, 8):
      median, best = timed(
          lambda key, x, p=impl, b=bits: dropout.apply_dropout(x, key, 0.1, b,
                                                               p),
          jax.random.key(0), x)
      print(f'| {prng} | {bits} | {median:.2f} | {best:.2f} |')


def output_layer_rows():
  print('\n| output layer value and gradients | dtype | t x v | median ms '
        '| fastest ms |')
  print('|---|---|---|---:|---:|')
  for dtype in (jnp.bfloat16, jnp.float32):
    for tokens, vocab in ((1024, 30522), (512, 50257)):
      keys = jax.random.split(jax.random.key(0), 3)
      h = jax.random.normal(keys[0], (tokens, 768), dtype)
      table = 0.02 * jax.random.normal(keys[1], (vocab, 768), jnp.float32)
      g = jax.random.normal(keys[2], (tokens, vocab), jnp.float32)
      for name, matmul in (('matmul_nt', fast_dots.matmul_nt),
                           ('logits_matmul', fast_dots.logits_matmul)):
        def value_and_grads(h, table, g, matmul=matmul, dtype=dtype):
          logits, back = jax.vjp(
              lambda h, t: matmul(h, t.astype(dtype), jnp.float32), h, table)
          return logits, back(g)
        median, best = timed(value_and_grads, h, table, g)
        print(f'| {name} | {jnp.dtype(dtype).name} | {tokens} x {vocab} | '
              f'{median:.1f} | {best:.1f} |')


def main(argv):
  del argv
  print(f'jax {jax.__version__} on {benchmark.cpu_description()}; '
        f'{benchmark.load_text()}\n')
  dropout_rows()
  output_layer_rows()
  print(f'\n{benchmark.load_text()} at the end')


if __name__ == '__main__':
  app.run(main)
