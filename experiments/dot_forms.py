r"""Speed of the dot forms a Transformer training step runs, per dtype.

The backward pass of `y = x @ w` runs `dy @ w.T` (input gradient) and
`x.T @ dy` (weight gradient); attention adds batched einsums. XLA:CPU
sends some forms to a fast library kernel (oneDNN/XNNPACK, AMX on Intel
for bf16) and others to its generic loop emitter, so the same FLOPs can
run 5x apart. This prints GFLOP/s of each form in jax and in PyTorch
(torch.einsum) and what XLA compiled the bf16 dot to.

  python experiments/dot_forms.py            # BERT-base shapes and 2048^3
  python experiments/dot_forms.py --hlo      # also the compiled dot ops
"""
import functools
import os
import re
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np


def forms(tokens: int, d: int, f: int, batch: int, heads: int, seq: int):
  """(name, einsum spec, lhs shape, rhs shape) at one model's sizes."""
  hd = d // heads
  n = 2048
  return (
      ('a @ b 2048^3', 'mk,kn->mn', (n, n), (n, n)),
      ('a.T @ b 2048^3', 'km,kn->mn', (n, n), (n, n)),
      ('a @ b.T 2048^3', 'mk,nk->mn', (n, n), (n, n)),
      ('dense fwd x @ w', 'mk,kn->mn', (tokens, d), (d, f)),
      ('dense dx = dy @ w.T', 'mn,kn->mk', (tokens, f), (d, f)),
      ('dense dw = x.T @ dy', 'mk,mn->kn', (tokens, d), (tokens, f)),
      ('dense dw = dy.T @ x (w.T)', 'mn,mk->nk', (tokens, f), (tokens, d)),
      ('3d dense dw bld,blf->df', 'bld,blf->df', (batch, seq, d),
       (batch, seq, f)),
      ('attn q.k bqhd,bkhd->bhqk', 'bqhd,bkhd->bhqk', (batch, seq, heads, hd),
       (batch, seq, heads, hd)),
      ('attn p.v bhqk,bkhd->bqhd', 'bhqk,bkhd->bqhd', (batch, heads, seq, seq),
       (batch, seq, heads, hd)),
      ('attn dv bhqk,bqhd->bkhd', 'bhqk,bqhd->bkhd', (batch, heads, seq, seq),
       (batch, seq, heads, hd)),
      ('attn q.k bhqd,bhkd->bhqk', 'bhqd,bhkd->bhqk', (batch, heads, seq, hd),
       (batch, heads, seq, hd)),
      ('attn p.v bhqk,bhkd->bhqd', 'bhqk,bhkd->bhqd', (batch, heads, seq, seq),
       (batch, heads, seq, hd)),
      ('attn dv bhqk,bhqd->bhkd', 'bhqk,bhqd->bhkd', (batch, heads, seq, seq),
       (batch, heads, seq, hd)),
  )


def flop_count(spec: str, lhs, rhs) -> int:
  """2 x the product of every distinct dimension in the einsum."""
  inputs = spec.split('->')[0].split(',')
  sizes = {}
  for letters, shape in zip(inputs, (lhs, rhs)):
    sizes.update(zip(letters, shape))
  return 2 * int(np.prod(list(sizes.values())))


def dot_kinds(compiled_text: str) -> str:
  """The ops that run the dot in the optimized HLO: fusion kinds and
  custom calls (e.g. __xnn_fusion, __onednn$matmul) or a plain dot."""
  kinds = set(re.findall(r'kind=(k\w+)', compiled_text))
  kinds |= set(re.findall(r'custom_call_target="([^"]+)"', compiled_text))
  kinds |= {m for m in re.findall(r'"fusion_kind":"(\w+)"', compiled_text)}
  if re.search(r'= \S+ dot\(', compiled_text):
    kinds.add('dot')
  if re.search(r'= \S+ transpose\(|copy\(', compiled_text):
    kinds.add('transpose/copy')
  return ' '.join(sorted(kinds))


def time_form(spec, lhs, rhs, dtype, out_dtype, repeats: int = 7):
  """(GFLOP/s of the fastest of `repeats` calls, compiled op kinds)."""
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.standard_normal(lhs), dtype)
  b = jnp.asarray(rng.standard_normal(rhs), dtype)
  fn = jax.jit(functools.partial(jnp.einsum, spec,
                                 preferred_element_type=out_dtype))
  compiled = fn.lower(a, b).compile()
  compiled(a, b).block_until_ready()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    compiled(a, b).block_until_ready()
    times.append(time.perf_counter() - start)
  return (flop_count(spec, lhs, rhs) / min(times) / 1e9,
          statistics.median(times), dot_kinds(compiled.as_text()))


def time_torch_form(spec, lhs, rhs, dtype, repeats: int = 7) -> float:
  """GFLOP/s of torch.einsum (oneDNN/MKL on CPU) for the same form."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count())
  a = torch.randn(lhs).to(dtype)
  b = torch.randn(rhs).to(dtype)
  torch.einsum(spec, a, b)
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    torch.einsum(spec, a, b)
    best = min(best, time.perf_counter() - start)
  return flop_count(spec, lhs, rhs) / best / 1e9


def main():
  show_hlo = '--hlo' in sys.argv
  # BERT-base at batch 8 x seq 128: 1024 tokens, d 768, d_ff 3072, 12 heads.
  rows = forms(tokens=1024, d=768, f=3072, batch=8, heads=12, seq=128)
  print(f'jax {jax.__version__}, {jax.devices()[0].device_kind}')
  print(f'{os.getloadavg()} load average (1/5/15 min); GFLOP/s, the fastest '
        'of 7 calls')
  print('| form | jax f32 | jax bf16->bf16 | jax bf16->f32 | torch f32 | '
        'torch bf16 | jax bf16 ops |')
  print('|---|---:|---:|---:|---:|---:|---|')
  import torch  # pylint: disable=g-import-not-at-top
  for name, spec, lhs, rhs in rows:
    f32, _, _ = time_form(spec, lhs, rhs, jnp.float32, jnp.float32)
    bf, _, kinds = time_form(spec, lhs, rhs, jnp.bfloat16, jnp.bfloat16)
    bf_f32, _, _ = time_form(spec, lhs, rhs, jnp.bfloat16, jnp.float32)
    t32 = time_torch_form(spec, lhs, rhs, torch.float32)
    t16 = time_torch_form(spec, lhs, rhs, torch.bfloat16)
    print(f'| {name} `{spec}` | {f32:,.0f} | {bf:,.0f} | {bf_f32:,.0f} | '
          f'{t32:,.0f} | {t16:,.0f} | {kinds if show_hlo else ""} |',
          flush=True)


if __name__ == '__main__':
  main()
