"""GPT-2 small (Radford et al. 2019): 12 layers, d_model 768, 12 heads.

124,439,808 parameters with the 50257-token BPE vocabulary and 1024
positions (output tied to the token embedding), as Hugging Face's `gpt2`.
This file only describes the network; a training config adds the task,
data and optimizer on top of `get_config()`. Pre-trained weights in the
Hugging Face layout load with `infra.hf_import.load_hf_checkpoint`.
"""
import ml_collections


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
  )


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = ml_collections.ConfigDict()
  config.model_name = 'decoder_lm'  # a name in models/registry.py
  config.model = gpt2_model(num_layers=12, d_model=768)
  return config
