"""Fields every experiment shares, with their defaults; one comment each.

Experiment files call `base_config()` and override what they change, so a
reader sees every knob in one place and `--config.x=y` type-checks.
"""
import dataclasses

import ml_collections

from models.config import ModelConfig


def model_config(**overrides) -> ml_collections.ConfigDict:
  """All ModelConfig fields (so every one can be overridden by flag)."""
  fields = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
  unknown = set(overrides) - set(fields)
  if unknown:
    raise ValueError(f'unknown model field(s): {", ".join(sorted(unknown))}')
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


def parse_options(arg: str | None, **defaults) -> dict:
  """get_config's 'key=value,key=value' argument -> dict over `defaults`,
  naming unknown keys."""
  options = dict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, _, value = item.partition('=')
    if key not in options:
      raise ValueError(f'unknown option {key!r} in {arg!r}; expected '
                       f'{", ".join(options)}')
    options[key] = value
  return options


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = 'seq2seq'          # infra/tasks registry name
  config.seed = 0                  # parameters, dropout and data order
  config.model = model_config()
  config.data = ml_collections.ConfigDict()

  config.batch_size = 64           # global batch (examples), all devices
  config.eval_batch_size = 64      # global batch for evaluation/decoding
  config.num_train_steps = 1000
  config.grad_accum_steps = 1      # microbatches per step (same update)
  config.label_smoothing = 0.1     # epsilon_ls of the paper
  # 0: materialise the [b, t, vocab] logits; n: fuse the output layer with
  # the loss over chunks of n positions (never holds the logits; faster on
  # CPU where memory-bound; seq2seq and causal_lm; infra/losses.py).
  config.loss_chunk_length = 0
  config.parallelism = 'pmap'      # 'pmap' or 'mesh' (jit over a Mesh)
  config.num_devices = 0           # 0: all devices; n: the first n (1 host)

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'adam'   # 'adam' (paper) or 'adamw'
  config.optimizer.schedule = 'rsqrt'  # 'rsqrt' (paper), 'cosine', 'constant'
  config.optimizer.learning_rate = 7e-4  # peak, reached after warmup
  config.optimizer.warmup_steps = 4000
  config.optimizer.end_learning_rate = 0.0  # cosine only
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.98
  config.optimizer.eps = 1e-9
  config.optimizer.weight_decay = 0.0  # adamw only
  config.optimizer.grad_clip_norm = 0.0  # 0: no clipping

  config.decode = ml_collections.ConfigDict()
  config.decode.beam_size = 4      # 1: greedy
  config.decode.alpha = 0.6        # length penalty ((5+len)/6)^alpha
  config.decode.max_decode_len = 0  # 0: the task's target length

  config.log_every = 50            # steps between metric fetches/logs
  config.eval_every = 1000         # steps between evaluations
  config.checkpoint_every = 1000   # steps between checkpoints
  config.keep_checkpoints = 3      # newest checkpoints kept
  config.average_last_checkpoints = 0  # >1: also evaluate their mean at the end
  config.init_from = ''            # pre-trained checkpoint to start from
  return config
