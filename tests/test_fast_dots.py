"""models/fast_dots.py: the custom-VJP matmuls equal the plain dots, and
bf16 models on CPU compile every dot to a bf16 library kernel."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from models import fast_dots
from models.bert import BertForPreTraining
from models.config import ModelConfig


def _normal(shape, seed, dtype=jnp.float32):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape),
                     dtype)


def _loss_and_grads(fn, *args):
  """Value and gradients of sum(fn(*args) * fixed random weights)."""
  out_shape = jax.eval_shape(fn, *args).shape
  w = _normal(out_shape, 99)
  loss = lambda *a: (fn(*a).astype(jnp.float32) * w).sum()
  return jax.value_and_grad(loss, argnums=tuple(range(len(args))))(*args)


PAIRS = (  # (fast, plain, lhs shape, rhs shape)
    (fast_dots.matmul, lambda a, b: a @ b, (3, 5, 7), (3, 7, 4)),
    (fast_dots.matmul_nt, lambda a, b: a @ jnp.swapaxes(b, -1, -2),
     (2, 3, 5, 7), (2, 3, 4, 7)),
    # The tied output layer, at a vocabulary 16 does not divide.
    (lambda a, b: fast_dots.logits_matmul(a, b, a.dtype),
     lambda a, b: a @ b.T, (24, 16), (37, 16)),
    (lambda a, b: fast_dots.dense_dot_general(a, b, (((2,), (0,)), ((), ()))),
     lambda a, b: lax.dot_general(a, b, (((2,), (0,)), ((), ()))),
     (2, 6, 8), (8, 5)),
    # DenseGeneral's output projection: [b, l, h, d] x [h, d, D].
    (lambda a, b: fast_dots.dense_dot_general(
        a, b, (((2, 3), (0, 1)), ((), ()))),
     lambda a, b: lax.dot_general(a, b, (((2, 3), (0, 1)), ((), ()))),
     (2, 6, 3, 4), (3, 4, 5)),
)


@pytest.mark.parametrize('fast,plain,lhs,rhs', PAIRS)
def test_float32_forward_and_gradients_equal_the_plain_dot(fast, plain, lhs,
                                                           rhs):
  a, b = _normal(lhs, 0), _normal(rhs, 1)
  value, grads = _loss_and_grads(fast, a, b)
  ref_value, ref_grads = _loss_and_grads(plain, a, b)
  np.testing.assert_allclose(value, ref_value, rtol=1e-6)
  for g, ref in zip(grads, ref_grads):  # float32 rounding, summed in
    np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-5)  # any order


@pytest.mark.parametrize('fast,plain,lhs,rhs', PAIRS)
def test_bf16_gradients_within_bf16_tolerance(fast, plain, lhs, rhs):
  """bf16 gradients against float32 ones of the same bf16-rounded inputs."""
  a, b = _normal(lhs, 0, jnp.bfloat16), _normal(rhs, 1, jnp.bfloat16)
  value, grads = _loss_and_grads(fast, a, b)
  ref_value, ref_grads = _loss_and_grads(plain, a.astype(jnp.float32),
                                         b.astype(jnp.float32))
  assert all(g.dtype == jnp.bfloat16 for g in grads)
  np.testing.assert_allclose(value, ref_value, rtol=2e-2)
  for g, ref in zip(grads, ref_grads):
    scale = np.abs(np.asarray(ref)).max()
    np.testing.assert_allclose(np.asarray(g, np.float32), ref,
                               atol=2e-2 * scale)


def test_other_dot_forms_fall_back_to_lax():
  a, b = _normal((3, 4, 5), 0), _normal((3, 5, 6), 1)
  dims = (((2,), (1,)), ((0,), (0,)))  # batched: not a Dense layer's form
  np.testing.assert_array_equal(fast_dots.dense_dot_general(a, b, dims),
                                lax.dot_general(a, b, dims))


def test_swapaxes_and_its_gradient_equal_jnp_swapaxes():
  x = _normal((2, 3, 4, 5), 0)
  w = _normal((2, 4, 3, 5), 1)
  grad = jax.grad(lambda x: (fast_dots.swapaxes(x, 1, 2) * w).sum())(x)
  np.testing.assert_array_equal(fast_dots.swapaxes(x, 1, 2),
                                jnp.swapaxes(x, 1, 2))
  np.testing.assert_array_equal(grad, jnp.swapaxes(w, 1, 2))


@pytest.mark.parametrize('shape', [(64, 48), (7, 5), (2, 3, 40, 24),
                                   (66, 130), (1, 16)])
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_tiled_transpose_equals_jnp_swapaxes(shape, dtype):
  """Exact for every shape, including sides the tile does not divide."""
  x = _normal(shape, 0, dtype)
  got = jax.jit(fast_dots.transpose)(x)
  assert got.dtype == dtype
  np.testing.assert_array_equal(got, jnp.swapaxes(x, -1, -2))


BERT = dict(vocab_size=50, d_model=32, num_heads=4, d_ff=64, num_layers=2,
            max_len=16, type_vocab_size=2, activation='gelu',
            embedding_layer_norm=True, position_embedding='learned',
            dropout_rate=0.0, init_std=0.02)


def _bert_loss_and_grads(cfg):
  ids = jnp.asarray(np.random.default_rng(0).integers(1, 50, (2, 16)))
  model = BertForPreTraining(cfg)
  params = model.init(jax.random.key(0), ids)['params']

  def loss(p):
    out = model.apply({'params': p}, ids)
    logp = jax.nn.log_softmax(out['mlm_logits'])
    return -jnp.take_along_axis(logp, ids[..., None], -1).mean()
  return jax.value_and_grad(loss)(params)


def test_bert_bf16_with_fast_dots_matches_the_plain_path():
  fast_cfg = ModelConfig(**BERT, dtype='bfloat16')
  assert fast_cfg.fast_paths.dense_dots  # the path under test is taken
  plain_cfg = fast_cfg.replace(cpu_fast_dots=False)
  assert not plain_cfg.fast_paths.dense_dots
  value, grads = _bert_loss_and_grads(fast_cfg)
  ref_value, ref_grads = _bert_loss_and_grads(plain_cfg)
  np.testing.assert_allclose(value, ref_value, rtol=1e-2)
  for g, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    scale = np.abs(np.asarray(ref)).max()
    np.testing.assert_allclose(g, ref, atol=5e-2 * scale + 1e-6)


def test_float32_dense_layers_take_the_fast_path_and_match_the_plain_one():
  """float32 on CPU: the dense layers' fast dots, not attention's, and the
  same loss and gradients as XLA's own dots to float32 rounding."""
  cfg = ModelConfig(**BERT)
  assert cfg.fast_paths.dense_dots
  assert not cfg.fast_paths.attention_dots
  value, grads = _bert_loss_and_grads(cfg)
  ref_value, ref_grads = _bert_loss_and_grads(cfg.replace(cpu_fast_dots=False))
  np.testing.assert_allclose(value, ref_value, rtol=1e-6)
  for g, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    scale = np.abs(np.asarray(ref)).max()
    np.testing.assert_allclose(g, ref, atol=1e-5 * scale + 1e-9)


def _entry_ops(compiled_text: str) -> str:
  return compiled_text[compiled_text.index('\nENTRY'):]


def test_bf16_dense_backward_runs_every_dot_in_bf16_library_kernels():
  """The point of the module: no dot left to XLA's loop emitter and none
  upcast to float32 (skipped where this jaxlib has no library dots)."""
  probe = jax.jit(jnp.dot).lower(jnp.ones((64, 64), jnp.bfloat16),
                                 jnp.ones((64, 64), jnp.bfloat16))
  if '_fusion"' not in probe.compile().as_text():
    pytest.skip('no library dot fusions in this jaxlib')
  x = jnp.ones((4, 64, 96), jnp.bfloat16)
  w1, w2 = jnp.ones((96, 256)), jnp.ones((256, 96))
  dims = (((2,), (0,)), ((), ()))

  def loss(w1, w2, x):
    h = jax.nn.gelu(fast_dots.dense_dot_general(x, w1.astype(x.dtype), dims))
    y = fast_dots.dense_dot_general(h, w2.astype(x.dtype), dims)
    return (y.astype(jnp.float32) ** 2).sum()
  text = jax.jit(jax.grad(loss, (0, 1, 2))).lower(w1, w2, x).compile(
      ).as_text()
  entry = _entry_ops(text)
  assert not re.search(r'= \S+ dot\(', entry), entry
  library = re.findall(r'= (\S+) fusion\([^\n]*"kind":"__\w+_fusion"', entry)
  assert len(library) == 6, library  # 2 forward + 4 backward dots
  assert all(s.startswith('bf16') for s in library), library


def test_bf16_output_layer_backward_runs_its_dots_in_bf16_library_kernels():
  probe = jax.jit(jnp.dot).lower(jnp.ones((64, 64), jnp.bfloat16),
                                 jnp.ones((64, 64), jnp.bfloat16))
  if '_fusion"' not in probe.compile().as_text():
    pytest.skip('no library dot fusions in this jaxlib')
  x, table = jnp.ones((64, 96), jnp.bfloat16), jnp.ones((1000, 96))

  def loss(x, table):
    logits = fast_dots.logits_matmul(x, table.astype(x.dtype), jnp.float32)
    return jax.nn.logsumexp(logits, -1).sum()
  entry = _entry_ops(jax.jit(jax.grad(loss, (0, 1))).lower(
      x, table).compile().as_text())
  assert not re.search(r'= \S+ dot\(', entry), entry
  library = re.findall(r'= (\S+) fusion\([^\n]*"kind":"__\w+_fusion"',
                       entry)
  dots = [s for s in library if '[' in s and ',' in s]  # not reductions
  assert len(dots) == 3, library  # forward, input and table gradients
  assert dots.count('f32[64,1000]{1,0}') == 1, dots  # float32 logits
  assert sum(s.startswith('bf16') for s in dots) == 2, dots
