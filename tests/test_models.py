"""Behaviour of the encoder-decoder that any correct Transformer must show."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.core import meta

from models.config import ModelConfig
from models.embeddings import (InputEmbedding, TokenEmbedding,
                               sinusoidal_positions)
from models.encoder_decoder import EncoderDecoder, shift_right

TINY = dict(vocab_size=20, d_model=32, num_heads=4, d_ff=64, num_layers=2,
            max_len=16, dropout_rate=0.0)


def init(cfg, inputs, targets):
  return EncoderDecoder(cfg).init(jax.random.key(0), inputs, targets)['params']


@pytest.fixture(params=['post', 'pre'])
def cfg(request):
  return ModelConfig(**TINY, norm_position=request.param,
                     final_layer_norm=request.param == 'pre')


def test_future_target_tokens_do_not_change_earlier_outputs(cfg):
  inputs = jnp.array([[3, 4, 5, 6, 7]])
  targets = jnp.array([[8, 9, 10, 11, 12, 13, 1]])  # odd length on purpose
  params = init(cfg, inputs, targets)
  model = EncoderDecoder(cfg)
  base = model.apply({'params': params}, inputs, targets)
  changed = targets.at[0, 4:].set(jnp.array([2, 3, 4]))
  out = model.apply({'params': params}, inputs, changed)
  # Logits at t predict targets[t] from targets[<t]: positions 0..4 unchanged.
  np.testing.assert_allclose(out[0, :5], base[0, :5], atol=1e-5)
  assert np.abs(out[0, 5:] - base[0, 5:]).max() > 1e-3


def test_padding_does_not_change_real_outputs(cfg):
  inputs = jnp.array([[3, 4, 5, 0, 0, 0, 0]])
  targets = jnp.array([[6, 7, 1, 0, 0]])
  params = init(cfg, inputs, targets)
  model = EncoderDecoder(cfg)
  short = model.apply({'params': params}, inputs[:, :3], targets[:, :3])
  padded = model.apply({'params': params}, inputs, targets)
  np.testing.assert_allclose(padded[:, :3], short, atol=1e-5)
  # Different padding content in the source must not matter either: the
  # encoder masks every key whose id is 0.
  encoded = model.apply({'params': params}, inputs, method='encode')
  encoded_short = model.apply({'params': params}, inputs[:, :3],
                              method='encode')
  np.testing.assert_allclose(encoded[:, :3], encoded_short, atol=1e-5)


@pytest.mark.parametrize('position_embedding', ['sinusoidal', 'learned', 'rope'])
@pytest.mark.parametrize('scan_layers', [False, True])
def test_incremental_decoding_equals_full_decoding(position_embedding,
                                                   scan_layers):
  cfg = ModelConfig(**TINY, position_embedding=position_embedding,
                    scan_layers=scan_layers)
  inputs = jnp.array([[3, 4, 5, 6, 0, 0], [7, 8, 9, 3, 4, 5]])
  targets = jnp.array([[5, 6, 7, 1, 0], [2, 3, 4, 5, 1]])
  params = init(cfg, inputs, targets)
  full = EncoderDecoder(cfg).apply({'params': params}, inputs, targets)
  model = EncoderDecoder(cfg, decode=True)
  cache = model.init(jax.random.key(0), inputs, jnp.zeros_like(targets))['cache']
  encoded = model.apply({'params': params}, inputs, method='encode')
  decoder_inputs = shift_right(targets)
  steps = []
  for t in range(targets.shape[1]):
    logits, variables = model.apply(
        {'params': params, 'cache': cache}, encoded, inputs,
        decoder_inputs[:, t:t + 1], method='decode_logits', mutable=['cache'])
    cache = variables['cache']
    steps.append(logits)
  np.testing.assert_allclose(jnp.concatenate(steps, 1), full, atol=1e-5)


def test_packed_segments_do_not_attend_to_each_other():
  cfg = ModelConfig(**TINY)
  a_in, a_tgt = [3, 4, 5], [6, 7, 1]
  b_in, b_tgt = [8, 9], [10, 1]
  params = init(cfg, jnp.array([a_in]), jnp.array([a_tgt]))
  model = EncoderDecoder(cfg)
  alone_a = model.apply({'params': params}, jnp.array([a_in]), jnp.array([a_tgt]))
  alone_b = model.apply({'params': params}, jnp.array([b_in]), jnp.array([b_tgt]))
  packed = model.apply(
      {'params': params}, jnp.array([a_in + b_in + [0]]),
      jnp.array([a_tgt + b_tgt + [0]]),
      inputs_positions=jnp.array([[0, 1, 2, 0, 1, 0]]),
      targets_positions=jnp.array([[0, 1, 2, 0, 1, 0]]),
      inputs_segmentation=jnp.array([[1, 1, 1, 2, 2, 0]]),
      targets_segmentation=jnp.array([[1, 1, 1, 2, 2, 0]]))
  np.testing.assert_allclose(packed[:, :3], alone_a, atol=1e-5)
  np.testing.assert_allclose(packed[:, 3:5], alone_b, atol=1e-5)


def test_model_overfits_a_small_batch():
  cfg = ModelConfig(**TINY)
  rng = np.random.default_rng(0)
  inputs = jnp.asarray(rng.integers(2, 20, (8, 6)), jnp.int32)
  targets = jnp.concatenate([inputs[:, ::-1], jnp.ones((8, 1), jnp.int32)], 1)
  params = init(cfg, inputs, targets)
  opt = optax.adam(3e-3)
  state = opt.init(params)

  @jax.jit
  def step(params, state):
    def loss_fn(p):
      logits = EncoderDecoder(cfg).apply({'params': p}, inputs, targets)
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, targets).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = opt.update(grads, state)
    return optax.apply_updates(params, updates), state, loss

  first = None
  for _ in range(300):
    params, state, loss = step(params, state)
    first = loss if first is None else first
  assert float(first) > 2.0
  assert float(loss) < 0.01


def test_bf16_compute_keeps_fp32_params():
  cfg = ModelConfig(**TINY, dtype='bfloat16')
  inputs, targets = jnp.array([[3, 4, 5]]), jnp.array([[6, 7, 1]])
  params = init(cfg, inputs, targets)
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype('float32')}
  logits = EncoderDecoder(cfg).apply({'params': params}, inputs, targets)
  assert logits.dtype == jnp.float32 and bool(jnp.isfinite(logits).all())


def loss_and_grads(cfg, params, inputs, targets):
  """Mean cross entropy with dropout on (remat must replay the same
  masks), and its gradient."""
  def loss_fn(p):
    logits = EncoderDecoder(cfg, deterministic=False).apply(
        {'params': p}, inputs, targets, rngs={'dropout': jax.random.key(7)})
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, targets).mean()
  return jax.jit(jax.value_and_grad(loss_fn))(params)


@pytest.mark.parametrize('scan_layers', [False, True])
@pytest.mark.parametrize('remat_policy', ['full', 'save_dots'])
def test_remat_gives_the_same_loss_and_gradients(remat_policy, scan_layers):
  """Remat only recomputes the forward pass inside the backward pass, so
  the gradients (the only thing it touches) must equal those without it,
  dropout included."""
  inputs = jnp.array([[3, 4, 5, 0], [6, 7, 8, 9]])
  targets = jnp.array([[6, 7, 1], [9, 8, 1]])
  base_cfg = ModelConfig(**{**TINY, 'dropout_rate': 0.1},
                         scan_layers=scan_layers)
  params = init(base_cfg, inputs, targets)
  base_loss, base_grads = loss_and_grads(base_cfg, params, inputs, targets)
  loss, grads = loss_and_grads(base_cfg.replace(remat_policy=remat_policy),
                               params, inputs, targets)
  np.testing.assert_allclose(loss, base_loss, rtol=1e-6)
  leaves = jax.tree_util.tree_leaves_with_path(grads)
  assert len(leaves) == len(jax.tree.leaves(base_grads)) > 20
  for (path, got), want in zip(leaves, jax.tree.leaves(base_grads)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6,
                               err_msg=jax.tree_util.keystr(path))
  # Not all zeros: the comparison above could not pass for a cut graph.
  assert float(optax.tree.norm(base_grads)) > 0.1


def test_fused_attention_gives_the_same_logits():
  inputs, targets = jnp.array([[3, 4, 5, 0]]), jnp.array([[6, 7, 1]])
  base_cfg = ModelConfig(**TINY)
  params = init(base_cfg, inputs, targets)
  base = EncoderDecoder(base_cfg).apply({'params': params}, inputs, targets)
  out = EncoderDecoder(base_cfg.replace(attention_impl='fused')).apply(
      {'params': params}, inputs, targets)
  np.testing.assert_allclose(out, base, atol=1e-5)


@pytest.mark.parametrize('fields, message', [
    (dict(d_model=30, num_heads=4), 'model.d_model=30 is not divisible by '
     'model.num_heads=4'),
    (dict(norm_position='middle'), "model.norm_position='middle'"),
    (dict(num_layers=0), 'model.num_layers must be positive'),
    (dict(dropout_rate=1.5), 'model.dropout_rate must be in [0, 1)'),
])
def test_bad_model_config_names_the_field(fields, message):
  with pytest.raises(ValueError) as error:
    ModelConfig(**{**TINY, **fields})
  assert message in str(error.value)


def test_sinusoids_are_the_papers_formula():
  """PE(pos, 2i) = sin(pos / 10000^(2i / d)), PE(pos, 2i + 1) = cos(...),
  section 3.5 of Vaswani et al. 2017."""
  d_model = 16
  table = sinusoidal_positions(64, d_model)
  assert table.shape == (64, d_model)
  for pos in (0, 1, 5, 63):
    for i in range(d_model // 2):
      angle = pos / 10000 ** (2 * i / d_model)
      assert table[pos, 2 * i] == pytest.approx(np.sin(angle), abs=1e-6)
      assert table[pos, 2 * i + 1] == pytest.approx(np.cos(angle), abs=1e-6)
  assert table[1, 0] == pytest.approx(0.841471, abs=1e-6)  # sin(1)


@pytest.mark.parametrize('scale_embedding', [True, False])
def test_input_embedding_is_scaled_tokens_plus_sinusoids(scale_embedding):
  """The encoder's input: the token's row times sqrt(d_model) (section
  3.4), plus the sinusoid of its position."""
  cfg = ModelConfig(**TINY, scale_embedding=scale_embedding)
  ids = jnp.array([[3, 4, 5, 3]])
  positions = jnp.array([[0, 1, 2, 7]])
  module = InputEmbedding(cfg, tokens=TokenEmbedding(cfg))
  variables = module.init(jax.random.key(0), ids, positions)
  table = np.asarray(meta.unbox(variables['params'])['tokens']['embedding'])
  out = module.apply(variables, ids, positions)
  scale = np.sqrt(32.0) if scale_embedding else 1.0
  expected = (table[ids[0]] * scale
              + sinusoidal_positions(16, 32)[positions[0]])
  np.testing.assert_allclose(out[0], expected, rtol=1e-6, atol=1e-6)
