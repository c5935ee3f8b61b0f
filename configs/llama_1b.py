r"""A 1.1B-parameter Llama-style decoder LM for GPUs, split with fsdp.

  python train.py --config=configs/llama_1b.py --workdir=/tmp/llama_1b

TinyLlama-1.1B's shape (Zhang et al. 2024): 22 layers, d_model 2048, 32
query heads sharing 4 key/value heads, SwiGLU d_ff 5632, vocabulary
32,000, untied output: 1,100,048,384 parameters, the Llama block of
configs/llama_small.py. Computed in bfloat16 with float32 parameters and
Adam state (about 18 GB with the gradients), cuDNN flash attention
(`model.attention_impl='cudnn'`, which train.py refuses without a GPU; on
another machine add --config.model.attention_impl=blockwise), layers
scanned and rematerialised keeping the matmul outputs. The mesh puts every device on
fsdp (ZeRO-3: each holds 1/n of the weights and of Adam's moments), so on
n GPUs the state takes 18/n GB each; `--config.mesh.data=2` etc. trades
fsdp for data parallelism. Batches are 8 rows of 2,048 tokens of the
built-in progression rows (a throughput run; for text set config.data as
configs/causal_lm.py does). Unmeasured: its speed, memory and MFU are not
recorded; it compiled and trained 3 steps (experiments/benchmark.py
--steps 2 --warmup 1) on one H200 with jax 0.11.2 in a smoke check.
"""
from configs.base_config import base_config, model_config
from configs.llama_small import llama_model


def get_config(arg: str | None = None):
  del arg  # one variant
  config = base_config()
  config.task = 'causal_lm'             # tasks/ registry name
  model = llama_model(num_layers=22, d_model=2048, num_heads=32,
                      num_kv_heads=4, d_ff=5632)
  model.update(
      dtype='bfloat16',                 # activations and matmuls
      param_dtype='float32',            # parameters and Adam state
      attention_impl='cudnn',
      remat_policy='save_dots',
      scan_layers=True)                 # one compiled layer, not 22
  config.model = model_config(**model)
  config.parallelism = 'mesh'
  config.mesh.update(data=1, fsdp=-1, tensor=1)
  config.data.source = 'synthetic'
  config.data.max_length = 2048
  config.data.num_eval_examples = 64
  config.batch_size = 8                 # 16,384 tokens a step
  config.eval_batch_size = 8
  config.num_train_steps = 2000
  config.label_smoothing = 0.0
  config.optimizer.name = 'adamw'
  config.optimizer.schedule = 'cosine'
  config.optimizer.learning_rate = 4e-4  # TinyLlama's peak
  config.optimizer.end_learning_rate = 4e-5
  config.optimizer.warmup_steps = 200
  config.optimizer.b2 = 0.95
  config.optimizer.eps = 1e-5
  config.optimizer.weight_decay = 0.1
  config.optimizer.decay_only_matrices = True
  config.optimizer.grad_clip_norm = 1.0
  config.decode.beam_size = 0           # eval: loss and perplexity only
  config.log_every = 10
  config.eval_every = 1000
  config.checkpoint_every = 500
  return config
