"""GPT-2 medium (Radford et al. 2019): 24 layers, d_model 1024, 16 heads.

354,823,168 parameters with the 50257-token vocabulary and 1024 positions,
as Hugging Face's `gpt2-medium`. See configs/gpt2_small.py. Speed, memory
and MFU on one H200: experiments/performance.md, "GPU (NVIDIA H200)".
"""
from configs.gpt2_small import gpt2_model, lm_config


def get_config(arg: str | None = None):
  del arg
  return lm_config(gpt2_model(num_layers=24, d_model=1024))
