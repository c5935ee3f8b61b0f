"""Every config value checked at once, before a run touches its workdir.

`validate(config)` raises ValueError with one line naming the first bad
field (`config.batch_size=0 must be >= 1`). train.py calls it before it
creates or writes anything, so a typo never leaves a half-made workdir.
Model fields are checked by building the frozen ModelConfig.
"""
import math

from models.config import model_config_from

# Integer fields and their smallest allowed value. Counts and cadences are
# divisors or loop bounds: 0 would divide by zero or train nothing.
_AT_LEAST = {
    'num_train_steps': 1, 'log_every': 1, 'eval_every': 1,
    'checkpoint_every': 1, 'grad_accum_steps': 1, 'batch_size': 1,
    'eval_batch_size': 1, 'keep_checkpoints': 1,
    'average_last_checkpoints': 0, 'loss_chunk_length': 0, 'num_devices': 0,
    'optimizer.warmup_steps': 0,
    'decode.beam_size': 0, 'decode.max_decode_len': 0,
    'data.num_eval_examples': 1, 'data.min_len': 1, 'data.max_len': 1,
    'data.max_examples': 0, 'data.max_length': 1,
    'data.max_input_length': 1, 'data.max_target_length': 1,
    'data.read_threads': 1, 'data.max_predictions': 0,
    'data.doc_stride': 1, 'data.max_query_length': 1,
    'data.max_answer_length': 1,
    'tokenizer.vocab_size': 1, 'tokenizer.max_training_sentences': 1,
}
# Real fields and their allowed interval: (low, high, high included).
_IN_RANGE = {
    'label_smoothing': (0.0, 1.0, False),
    'optimizer.b1': (0.0, 1.0, False),
    'optimizer.b2': (0.0, 1.0, False),
    'data.mask_rate': (0.0, 1.0, True),
    'data.next_sentence_prob': (0.0, 1.0, True),
    'tokenizer.character_coverage': (0.0, 1.0, True),
}
# Real fields that must be finite and >= 0 (rates, norms, FLOP/s, seconds).
_NON_NEGATIVE = (
    'optimizer.learning_rate', 'optimizer.end_learning_rate',
    'optimizer.eps', 'optimizer.weight_decay', 'optimizer.grad_clip_norm',
    'peak_flops_per_device')
_CHOICES = {
    'parallelism': ('pmap', 'mesh'),
    'optimizer.name': ('adam', 'adamw'),
    'optimizer.schedule': ('rsqrt', 'cosine', 'constant'),
}


def validate(config):
  """Raises ValueError naming the first field whose value cannot work."""
  for name, low in _AT_LEAST.items():
    value = _get(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      raise ValueError(f'config.{name}={value!r} must be an integer >= {low}')
  for name, (low, high, closed) in _IN_RANGE.items():
    value = _get(config, name)
    if not (_is_real(value) and low <= value and (
        value <= high if closed else value < high)):
      bracket = ']' if closed else ')'
      raise ValueError(
          f'config.{name}={value!r} must be in [{low:g}, {high:g}{bracket}')
  for name in _NON_NEGATIVE:
    value = _get(config, name)
    if not (_is_real(value) and value >= 0):
      raise ValueError(f'config.{name}={value!r} must be finite and >= 0')
  if not (_is_real(config.checkpoint_timeout_s) and
          config.checkpoint_timeout_s > 0):
    raise ValueError(f'config.checkpoint_timeout_s='
                     f'{config.checkpoint_timeout_s!r} must be finite and > 0')
  for name, choices in _CHOICES.items():
    if _get(config, name) not in choices:
      raise ValueError(f'config.{name}={_get(config, name)!r} is not one of '
                       f'{", ".join(choices)}')
  if config.data.max_len < config.data.min_len:
    raise ValueError(f'config.data.max_len={config.data.max_len} is below '
                     f'config.data.min_len={config.data.min_len}')
  if not _is_real(config.decode.alpha):
    raise ValueError(f'config.decode.alpha={config.decode.alpha!r} must be '
                     'finite')
  model_config_from(config.model)  # one line naming a bad model field
  check_averaging(config)


def check_averaging(config):
  """Fails before training if the run cannot end with the N checkpoints
  that config.average_last_checkpoints asks to average."""
  wanted = config.average_last_checkpoints
  if wanted <= 1:
    return
  total, every = config.num_train_steps, config.checkpoint_every
  saved = total // every + (1 if total % every else 0)
  if wanted > min(saved, config.keep_checkpoints):
    raise ValueError(
        f'config.average_last_checkpoints={wanted} but the run keeps '
        f'{min(saved, config.keep_checkpoints)} checkpoints '
        f'(config.keep_checkpoints={config.keep_checkpoints}, one every '
        f'config.checkpoint_every={every} of {total} steps)')


def _get(config, dotted: str):
  for part in dotted.split('.'):
    config = config[part]
  return config


def _is_real(value) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))
