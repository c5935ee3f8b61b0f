r"""GPT-2 small (Radford et al. 2019): 12 layers, d_model 768, 12 heads.

124,439,808 parameters with the 50257-token BPE vocabulary and 1024
positions (output tied to the token embedding), as Hugging Face's `gpt2`.

  python train.py --config=configs/gpt2_small.py --workdir=/tmp/gpt2 \
      --config.init_from=/path/to/hf/gpt2     # optional: HF weights

The default data are the built-in synthetic rows (a smoke run: on an
accelerator; too slow for 2 CPU cores). For text, set config.data as in
configs/causal_lm.py with a GPT-2 tokenizer (config.tokenizer.kind='hf_json',
path=.../tokenizer.json). No training result is recorded yet; its speed,
memory and MFU on one H200 (bf16, cuDNN attention) are in
experiments/performance.md, "GPU (NVIDIA H200)". Pre-trained
weights in the Hugging Face layout load with
`models.hf.load_hf_checkpoint` (or `config.init_from`).
"""
from configs.base_config import base_config, model_config


def gpt2_model(num_layers: int, d_model: int) -> dict:
  """ModelConfig fields of a GPT-2 of the given depth and width."""
  return dict(
      vocab_size=50257,
      d_model=d_model,
      num_heads=d_model // 64,
      d_ff=4 * d_model,
      num_layers=num_layers,
      dropout_rate=0.1,               # resid_pdrop = embd_pdrop
      attention_dropout_rate=0.1,     # attn_pdrop
      activation='gelu_tanh',         # HF 'gelu_new'
      norm_position='pre',
      final_layer_norm=True,          # ln_f
      layer_norm_epsilon=1e-5,
      position_embedding='learned',   # 'rope' works too (no wpe table)
      max_len=1024,                   # n_ctx
      type_vocab_size=0,
      tie_output_embedding=True,
      scale_embedding=False,
      init_std=0.02,
      scale_residual_init=True,       # c_proj: 0.02 / sqrt(2 * n_layer)
  )


def lm_config(model: dict):
  """A causal-LM training config for a GPT-2 `model` on synthetic rows."""
  config = base_config()
  config.task = 'causal_lm'         # tasks/ registry name
  config.model = model_config(**model)
  config.data.source = 'synthetic'
  config.data.max_length = 1024
  config.data.num_eval_examples = 256
  config.batch_size = 32
  config.eval_batch_size = 32
  config.num_train_steps = 2000
  config.label_smoothing = 0.0
  config.optimizer.name = 'adamw'
  config.optimizer.schedule = 'cosine'
  config.optimizer.learning_rate = 6e-4
  config.optimizer.warmup_steps = 200
  config.optimizer.b2 = 0.95
  config.optimizer.eps = 1e-8
  config.optimizer.weight_decay = 0.1
  config.optimizer.grad_clip_norm = 1.0
  config.decode.beam_size = 0       # > 0: greedy continuation accuracy
  config.log_every = 50
  config.eval_every = 1000
  config.checkpoint_every = 1000
  return config


def get_config(arg: str | None = None):
  del arg
  return lm_config(gpt2_model(num_layers=12, d_model=768))
