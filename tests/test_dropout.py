"""Dropout at 8, 16 and 32 random bits per decision, from either generator
(models/dropout.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import dropout, fast_paths
from models.config import ModelConfig
from models.encoder_decoder import EncoderDecoder


@pytest.mark.parametrize('prng', [None, 'threefry4x32'])
@pytest.mark.parametrize('bits', [8, 16, 32])
@pytest.mark.parametrize('shape', [(64, 128, 32), (1001, 999)])  # 2nd: ragged
def test_drop_fraction_and_mean_match_the_rate(bits, shape, prng):
  rate = 0.3
  x = jnp.ones(shape)
  y = jax.jit(lambda k: dropout.apply_dropout(x, k, rate, bits, prng))(
      jax.random.key(0))
  n = x.size
  dropped = float((y == 0).mean())
  expected = dropout.quantized_rate(rate, bits)
  sigma = np.sqrt(expected * (1 - expected) / n)
  assert abs(dropped - expected) < 5 * sigma
  # Inverted dropout keeps the mean (the scale uses the realised rate).
  assert abs(float(y.mean()) - 1.0) < 5 * sigma / (1 - expected)
  np.testing.assert_allclose(np.unique(np.asarray(y)),
                             [0.0, 1 / (1 - expected)], rtol=1e-6)


def test_quantized_rates():
  assert dropout.quantized_rate(0.3, 8) == 77 / 256
  assert dropout.quantized_rate(0.1, 16) == 6554 / 65536
  assert dropout.quantized_rate(0.3, 32) == 0.3


def test_eight_bit_masks_are_independent_across_positions():
  # Four decisions share one 32-bit word: neighbours must not be correlated.
  keep, _ = dropout.keep_mask(jax.random.key(1), 0.5, (200_000,), 8)
  keep = np.asarray(keep, np.float32)
  corr = np.corrcoef(keep[:-1], keep[1:])[0, 1]
  assert abs(corr) < 0.02
  other, _ = dropout.keep_mask(jax.random.key(2), 0.5, (200_000,), 8)
  assert 0.45 < float((np.asarray(other) == keep).mean()) < 0.55


def test_auto_prng_is_threefry4x32_on_cpu_without_a_rolled_loop():
  # jax lowers threefry2x32 on the CPU as a while loop that writes the whole
  # state each iteration (the cost 'auto' avoids); threefry4x32 is one
  # straight-line elementwise computation. ('auto' still draws its 4-word
  # key from flax's rng in a loop, of size 4.)
  assert jax.default_backend() == 'cpu'
  auto = ModelConfig(vocab_size=8, d_model=8, num_heads=1, d_ff=8,
                     num_layers=1)
  assert auto.fast_paths.dropout_prng == 'threefry4x32'
  assert fast_paths.resolve(auto, 'gpu').dropout_prng is None
  assert auto.replace(dropout_prng='jax_default').fast_paths.dropout_prng is (
      None)
  x = jnp.ones((8, 4, 32, 32))

  def mask_sized_loops(prng):
    hlo = jax.jit(lambda k: dropout.apply_dropout(x, k, 0.1, 32, prng)).lower(
        jax.random.key(0)).compile().as_text()
    return [line for line in hlo.splitlines()
            if ' while(' in line and '[8,4,32,32]' in line]

  assert mask_sized_loops(None)
  assert not mask_sized_loops(auto.fast_paths.dropout_prng)


@pytest.mark.parametrize('key', [jax.random.key(3), jax.random.PRNGKey(3)])
def test_threefry4x32_masks_follow_the_dropout_rng(key):
  mask = lambda k: np.asarray(
      dropout.keep_mask(dropout.dropout_key(k, 'threefry4x32'), 0.5,
                        (4096,))[0])
  np.testing.assert_array_equal(mask(key), mask(key))
  other = jax.random.fold_in(key, 1)
  assert 0.45 < float((mask(other) == mask(key)).mean()) < 0.55
  # Not the jax_default masks under another name.
  plain = np.asarray(dropout.keep_mask(key, 0.5, (4096,))[0])
  assert 0.45 < float((plain == mask(key)).mean()) < 0.55


def test_model_trains_with_eight_bit_dropout_and_is_exact_in_eval():
  cfg = ModelConfig(vocab_size=20, d_model=32, num_heads=4, d_ff=64,
                    num_layers=2, max_len=16, dropout_rate=0.3,
                    attention_dropout_rate=0.1, activation_dropout_rate=0.1,
                    dropout_bits=8)
  inputs, targets = jnp.array([[3, 4, 5, 6]]), jnp.array([[7, 8, 9, 1]])
  params = EncoderDecoder(cfg).init(jax.random.key(0), inputs,
                                    targets)['params']
  run = lambda c, train, seed: EncoderDecoder(c, deterministic=not train).apply(
      {'params': params}, inputs, targets,
      rngs={'dropout': jax.random.key(seed)})
  exact = cfg.replace(dropout_bits=32)
  np.testing.assert_array_equal(run(cfg, False, 0), run(exact, False, 0))
  a, b = run(cfg, True, 0), run(cfg, True, 1)
  assert np.abs(a - b).max() > 1e-3  # dropout is on and follows the rng
  np.testing.assert_array_equal(a, run(cfg, True, 0))


def test_a_mask_is_drawn_once_for_the_forward_and_backward_pass():
  """The generator's rounds (shift-lefts in threefry4x32) appear in the
  compiled gradient of a model as often as in its forward pass: XLA does
  not copy the generator into each consumer of a mask (models/dropout.py;
  without the barrier, 2.4x as often in this model)."""
  cfg = ModelConfig(vocab_size=20, d_model=32, num_heads=4, d_ff=64,
                    num_layers=1, max_len=16, dropout_rate=0.1,
                    dropout_prng='threefry4x32')
  inputs, targets = jnp.array([[3, 4, 5, 0]]), jnp.array([[6, 7, 1]])
  model = EncoderDecoder(cfg, deterministic=False)
  params = model.init(jax.random.key(0), inputs, targets)['params']

  def forward(p):
    return model.apply({'params': p}, inputs, targets,
                       rngs={'dropout': jax.random.key(1)}).sum()

  def rounds(fn):
    return jax.jit(fn).lower(params).compile().as_text().count('shift-left(')

  once = rounds(forward)
  assert once >= 10  # the threefry4x32 rounds are there to count
  assert rounds(jax.grad(forward)) <= once


@pytest.mark.parametrize('overrides, message', [
    (dict(dropout_bits=12), 'model.dropout_bits=12 is not one of 8, 16, 32'),
    (dict(dropout_prng='philox'), "model.dropout_prng='philox' is not one of "
     'auto, jax_default, threefry4x32'),
    (dict(dropout_bits=8, attention_dropout_rate=0.001),
     'model.attention_dropout_rate=0.001 rounds to 0'),
])
def test_bad_dropout_bits_are_one_clear_error(overrides, message):
  with pytest.raises(ValueError, match=message):
    ModelConfig(**overrides)
