r"""A small Llama-style decoder LM (Touvron et al. 2023) for 2 CPU cores.

  python train.py --config=configs/llama_small.py --workdir=/tmp/llama_small

The Llama block on the shared layers: pre-RMSNorm, SwiGLU feed-forward
(d_ff about 8/3 d_model), grouped-query attention (4 query heads sharing 2
key/value heads), rotary positions, no biases and an output projection
untied from the token embedding. 2 layers, d_model 64, on the built-in
progression rows (input_data/synthetic.py), as configs/causal_lm.py's
default; minutes on 2 CPU cores. No measured result is recorded yet.
Pre-trained LlamaForCausalLM weights load with
`models.hf.load_hf_checkpoint` (or `config.init_from`).
"""
from configs.base_config import base_config, model_config


def llama_model(num_layers: int, d_model: int, num_heads: int,
                num_kv_heads: int, d_ff: int) -> dict:
  """ModelConfig fields of a Llama of the given shape."""
  return dict(
      vocab_size=32000,
      d_model=d_model,
      num_heads=num_heads,
      num_kv_heads=num_kv_heads,      # grouped-query attention
      d_ff=d_ff,
      num_layers=num_layers,
      dropout_rate=0.0,               # Llama trains without dropout
      attention_dropout_rate=0.0,
      activation='silu',
      ffn_kind='gated',               # SwiGLU: w2(silu(w1 x) * w3 x)
      norm_kind='rms',
      norm_position='pre',
      final_layer_norm=True,
      layer_norm_epsilon=1e-5,        # rms_norm_eps
      position_embedding='rope',      # rotate_half layout, as HF Llama
      rope_base=10000.0,
      max_len=2048,
      type_vocab_size=0,
      tie_output_embedding=False,     # lm_head apart from embed_tokens
      scale_embedding=False,
      use_bias=False,
      init_std=0.02,
  )


def get_config(arg: str | None = None):
  del arg  # one variant
  config = base_config()
  config.task = 'causal_lm'             # tasks/ registry name
  model = llama_model(num_layers=2, d_model=64, num_heads=4, num_kv_heads=2,
                      d_ff=176)
  model.update(vocab_size=64, max_len=32)
  config.model = model_config(**model)
  config.data.source = 'synthetic'
  config.data.max_length = 32
  config.data.num_eval_examples = 256
  config.batch_size = 64
  config.eval_batch_size = 64
  config.num_train_steps = 2000
  config.label_smoothing = 0.0
  config.optimizer.name = 'adamw'
  config.optimizer.schedule = 'cosine'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 100
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.95            # Llama's AdamW betas
  config.optimizer.weight_decay = 0.1
  config.optimizer.grad_clip_norm = 1.0
  config.decode.beam_size = 0           # > 0: greedy continuation accuracy
  config.log_every = 100
  config.eval_every = 1000
  config.checkpoint_every = 1000
  return config
