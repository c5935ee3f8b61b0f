"""The CPU fast paths of a model, chosen once from the backend and dtype.

Each path writes the same computation in a form that XLA:CPU runs faster;
on a GPU or TPU every one is off and XLA's own forms run. The measurements
behind each are in experiments/performance.md (sections named below).

  dense_dots      the dense and output layers' matmuls as models/fast_dots.py
                  custom-VJP dots, whose backward dots are library kernels
                  and whose transposes are tiled copies: bf16 and float32
                  (`model.cpu_fast_dots`; sections 0, 6 and 8)
  attention_dots  attention's two batched products as fast_dots matmuls:
                  bf16 only, as in float32 XLA already runs them in the
                  library and the copies cost more (section 8, change 2)
  dropout_prng    the generator of dropout masks: 'auto' is threefry4x32
                  on the CPU (section 9, change 1), else flax's key as it
                  is (None); models/dropout.py
  cond_update     the optimizer update under lax.cond, skipped when the
                  step is not finite, instead of a select that copies the
                  state (training/steps.py)

A ModelConfig resolves its paths once, on first use (`cfg.fast_paths`);
every layer reads them from there.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class FastPaths:
  dense_dots: bool = False
  attention_dots: bool = False
  dropout_prng: str | None = None  # a jax PRNG impl name; None: the key's own
  cond_update: bool = False


def resolve(cfg, backend: str) -> FastPaths:
  """The paths of ModelConfig `cfg` on `backend` (jax.default_backend())."""
  cpu = backend == 'cpu'
  dense = cpu and cfg.cpu_fast_dots and cfg.dtype in ('bfloat16', 'float32')
  if cfg.dropout_prng == 'auto':
    prng = 'threefry4x32' if cpu else None
  else:
    prng = None if cfg.dropout_prng == 'jax_default' else cfg.dropout_prng
  return FastPaths(dense_dots=dense,
                   attention_dots=dense and cfg.dtype == 'bfloat16',
                   dropout_prng=prng, cond_update=cpu)
