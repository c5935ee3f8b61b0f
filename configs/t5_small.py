r"""T5-small (Raffel et al. 2020): the encoder-decoder with T5's block.

  python train.py --config=configs/t5_small.py --workdir=/tmp/t5_small
  python train.py --config=configs/t5_small.py:tiny --workdir=/tmp/t5_tiny

6 + 6 layers, d_model 512, 8 heads of 64, d_ff 2048, vocabulary 32,128
(60,506,624 parameters with v1.0's tied output); pre-RMSNorm without
biases, a ReLU feed-forward (v1.0; `:v1_1` the gated-GELU of T5 v1.1 with
an untied output layer), relative position buckets (32, up to distance
128) shared by the layers of each stack, unscaled attention logits, no
embedding scaling, the tied output reading the decoder's output times
d_model^-0.5. It trains on the built-in reversal rows
(input_data/synthetic.py) so it runs anywhere; `:tiny` (2 + 2 layers,
d_model 64, vocabulary 32, learning rate 3e-3) reached exact match 0.996 on
the 1,000 held-out reversals (beam search, 4 beams) after its 3,000 steps,
in 3 min 6 s on 2 Xeon cores shared with another run and a test suite
(2026-11-27). The full size has no recorded result yet. Pre-trained
T5ForConditionalGeneration weights load with
`models.hf.load_hf_checkpoint` (or `config.init_from`).
"""
from configs.base_config import base_config, model_config
from errors import UserError


def t5_model(num_layers: int, d_model: int, num_heads: int, d_ff: int,
             vocab_size: int = 32128, version: str = '1.0') -> dict:
  """ModelConfig fields of a T5 (v1.0, or v1.1: gated GELU, untied)."""
  v1_1 = version == '1.1'
  return dict(
      vocab_size=vocab_size,
      d_model=d_model,
      num_heads=num_heads,            # d_kv = d_model / num_heads
      d_ff=d_ff,
      num_layers=num_layers,          # and as many decoder layers
      dropout_rate=0.1,
      activation='gelu_tanh' if v1_1 else 'relu',  # HF's gelu_new
      ffn_kind='gated' if v1_1 else 'dense',
      norm_kind='rms',                # T5LayerNorm: scale, no mean, no bias
      norm_position='pre',
      final_layer_norm=True,
      layer_norm_epsilon=1e-6,
      position_embedding='t5_relative',
      relative_attention_num_buckets=32,
      relative_attention_max_distance=128,
      scale_attention_logits=False,   # T5 folds 1/sqrt(d) into the init
      max_len=512,
      type_vocab_size=0,
      share_embeddings=True,          # one 'shared' table
      tie_output_embedding=not v1_1,
      scale_decoder_output=not v1_1,  # tied logits from y * d_model^-0.5
      scale_embedding=False,
      use_bias=False,
      init_std=0.0,
  )


def get_config(arg: str | None = None):
  """arg: 'tiny' and/or 'v1_1', comma-separated."""
  flags = set(filter(None, (arg or '').split(',')))
  unknown = flags - {'tiny', 'v1_1'}
  if unknown:
    raise UserError(f'unknown option(s) {", ".join(sorted(unknown))} in '
                    f'{arg!r}; expected tiny, v1_1')
  version = '1.1' if 'v1_1' in flags else '1.0'
  config = base_config()
  config.task = 'seq2seq'
  if 'tiny' in flags:
    model = t5_model(2, 64, 4, 256, vocab_size=32, version=version)
  else:
    model = t5_model(6, 512, 8, 2048, version=version)
  model.update(dropout_rate=0.0)  # the synthetic task needs none
  config.model = model_config(**model)
  config.data.source = 'synthetic'
  config.data.synthetic_task = 'reverse'
  config.data.synthetic_min_len = 4
  config.data.synthetic_max_len = 12
  config.data.num_eval_examples = 1000
  config.batch_size = 64
  config.num_train_steps = 3000
  config.label_smoothing = 0.0
  config.optimizer.name = 'adamw'
  config.optimizer.schedule = 'cosine'
  config.optimizer.learning_rate = 3e-3 if 'tiny' in flags else 1e-3
  config.optimizer.warmup_steps = 200
  config.log_every = 100
  config.eval_every = 1000
  config.checkpoint_every = 1000
  return config
