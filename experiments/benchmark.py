r"""Training and decoding speed, memory and MFU of a config; optional
PyTorch baseline and knob sweep. Figures and commands: performance.md.

  python experiments/benchmark.py --config=configs/multi30k_en_de.py \
      --batch_size 64 --seq_len 32 --steps 10 --compare_torch
  python experiments/benchmark.py \
      --config=configs/bert_pretraining.py:size=base,data=wikitext2 \
      --batch_size 8 --seq_len 128 --steps 5 --nodecode
  python experiments/benchmark.py --config=configs/multi30k_en_de.py \
      --batch_size 64 --seq_len 32 --sweep=knobs
  python experiments/benchmark.py --config=configs/gpt2_small.py \
      --batch_size 4 --seq_len 128 --compare_torch --both_dtypes \
      --loss_steps 50

--compare_torch trains ours, PyTorch float32 and PyTorch under
torch.autocast(bf16) (with --both_dtypes also ours in the other of
float32/bf16) in one process, one step of each in turn, so that load from
other processes falls on all of them alike; it prints the tokens/s ratios
the targets name. On an idle machine add --own_processes: each contestant
then runs alone in its own process, one after the other (in one process,
PyTorch's spinning OpenMP threads and XLA's thread pool slow each other).
Every table's header names the jax version, the CPU model and its ISA
flags (AVX-512, bf16, AMX) and the load average at the start; the last
line gives it at the end.

The step is train.py's: `training.steps.train_step` under
`MeshParallel.compile` with the state donated, from
`training.loop.initial_state`, on synthetic token batches
of the configured shapes (no padding, so every position is a real token).
The run uses mode 'mesh' (jit), which is the same program on one device and
lets the compile be timed alone. Printed per measurement, as markdown rows:
  compile    lower + compile of the step, seconds
  step       median step time after `--warmup` steps (each step waits for
             its result; the loop itself fetches metrics only every
             log_every steps, so this is the loop's speed)
  tokens/s   token positions per step (source + target for the
             encoder-decoder, s otherwise) / step
  memory     device peak_bytes_in_use if the backend reports it, else XLA's
             compiled footprint (arguments + outputs + temporaries - donated
             aliases); the process max RSS is printed once at the end
  FLOPs      training/flops.py model FLOPs per step, and XLA's cost analysis
             (which counts a while-loop body once: scan, accumulation)
  MFU        model FLOP/s / peak. On GPU the peak is the data-sheet dense
             bf16 peak (H100 SXM 989e12). On CPU it is measured in the
             same run: after every timed step a 2048^3 float32 jnp.dot is
             timed (the fastest of 3 calls), each step's MFU uses that
             matmul's FLOP/s, and the median ratio is reported (other
             processes' load cancels out; the 'peak' column is the median
             of those matmuls)
Decoding (`--decode`): the encoder-decoder's task.predict with beam 1
(greedy) and 4, with the KV cache; sampling from the decoder LM with
decoding/generation.py. Every row decodes `seq_len` tokens: EOS is disabled so
that random weights do not stop early. Tokens/s counts output tokens (one
per row and step, not per beam).
"""
import copy
import functools
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from cli import command
from cli import flags as cli_flags  # pylint: disable=g-import-not-at-top
from decoding import generation
from errors import UserError
from tasks import get_task
from tasks import task_class
from training import flops, loop, optimizers, parallel
from training import steps as train_steps

_CONFIG = cli_flags.CONFIG  # --config and --config.x=y, as train.py's
_BATCH = flags.DEFINE_integer('batch_size', 0, '0: config.batch_size.')
_SEQ_LEN = flags.DEFINE_integer('seq_len', 0, 'Sequence length (source and '
                                'target length for seq2seq); 0: config.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed training steps.')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed steps after compiling.')
_DECODE = flags.DEFINE_bool('decode', True, 'Also time decoding.')
_DECODE_BATCH = flags.DEFINE_integer('decode_batch_size', 0,
                                     '0: the training batch size.')
_TORCH = flags.DEFINE_bool('compare_torch', False,
                           'Also train the same sizes in PyTorch, float32 '
                           'and under bf16 autocast, interleaved step by '
                           'step with ours (CPU or CUDA).')
_BOTH = flags.DEFINE_bool('both_dtypes', False, 'With --compare_torch: '
                          'also train ours in the other of float32/bf16.')
_OWN_PROCESSES = flags.DEFINE_bool(
    'own_processes', False, 'With --compare_torch: time each contestant '
    'alone in its own process, one after the other (for an idle machine: '
    'in one process, eager PyTorch\'s spinning OpenMP threads and XLA\'s '
    'thread pool slow each other down).')
_ROUNDS = flags.DEFINE_integer(
    'rounds', 1, 'With --own_processes: run the contestants in turn this '
    'many times (A B C D, A B C D, ...) and report each one\'s median '
    'round, so that a slow spell of the machine falls on all of them.')
_CONTESTANT = flags.DEFINE_string('contestant', '', 'Internal, set by '
                                  '--own_processes: time only this one.')
_CONTESTANT_JSON = flags.DEFINE_string('contestant_json', '', 'Internal: '
                                       'where --contestant writes its result.')
_LOSS_STEPS = flags.DEFINE_integer('loss_steps', 0, 'Also train ours in '
                                   'float32 and bf16 side by side for this '
                                   'many steps and compare the losses.')
_SWEEP = flags.DEFINE_enum('sweep', None, ['knobs', 'causes',
                                            'scan_compile'],
                           'knobs: dtype/attention/remat/scan/accumulation/'
                           'donation/host-sync/dropout bits/fused loss rows; '
                           'causes: dropout, fused loss, PRNG, bf16; '
                           'scan_compile: compile '
                           'time of a 24-layer model with/without scan.')
_PEAK_SIZE = flags.DEFINE_integer('peak_size', 2048, 'CPU peak: the side of '
                                  'the timed float32 matmul.')
_RESULTS_FILE = flags.DEFINE_string('results_file', '',
                                    'Also append the rows to this file.')

HEADER = ('| measurement | compile s | step ms | tokens/s | memory MB | '
          'model GFLOP/step | XLA GFLOP/step | peak GFLOP/s | MFU |')
RULE = '|---|---:|---:|---:|---:|---:|---:|---:|---:|'


# ------------------------------------------------------------- hardware --
def on_gpu() -> bool:
  return jax.default_backend() == 'gpu'


def matmul_flops_per_s(size: int = 2048, dtype=jnp.float32,
                       repeats: int = 10) -> float:
  """Median FLOP/s of a [size, size] x [size, size] jnp.dot."""
  a = jnp.asarray(np.random.default_rng(0).standard_normal((size, size)),
                  dtype)
  dot = jax.jit(jnp.dot)
  dot(a, a).block_until_ready()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    dot(a, a).block_until_ready()
    times.append(time.perf_counter() - start)
  return 2 * size ** 3 / statistics.median(times)


def matmul_timer(size: int, dtype=jnp.float32, repeats: int = 3):
  """() -> FLOP/s of a [size, size] x [size, size] jnp.dot (compiled once):
  the fastest of `repeats` back-to-back calls.

  The first dot after a training step runs 30-40% slower than the next ones
  on an idle machine (its operands were evicted from cache and the thread
  pool was parked: 280-350 against 450-500 GFLOP/s here), so a single dot
  would understate the peak and overstate MFU by up to 1.6x.
  """
  a = jnp.asarray(np.random.default_rng(0).standard_normal((size, size)),
                  dtype)
  dot = jax.jit(jnp.dot)
  dot(a, a).block_until_ready()
  def once():
    best = float('inf')
    for _ in range(repeats):
      start = time.perf_counter()
      dot(a, a).block_until_ready()
      best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best
  return once


def peak_flops() -> tuple[float, str]:
  """(FLOP/s, how it was obtained): data sheet on GPU, measured on CPU."""
  kind = jax.devices()[0].device_kind
  if on_gpu():
    peak = flops.gpu_peak_flops(kind)
    if peak:
      return peak, f'{kind} data-sheet dense bf16'
    return (matmul_flops_per_s(8192, jnp.bfloat16),
            f'{kind}: measured 8192^3 bf16 dot (no data-sheet entry)')
  size = _PEAK_SIZE.value
  return (matmul_flops_per_s(size),
          f'measured {size}^3 float32 jnp.dot on {os.cpu_count()} CPU cores')


def memory_mb(compiled) -> float:
  """Device peak if reported (GPU), else XLA's compiled footprint."""
  stats = jax.devices()[0].memory_stats()
  if stats and 'peak_bytes_in_use' in stats:
    return stats['peak_bytes_in_use'] / 2 ** 20
  m = compiled.memory_analysis()
  if m is None:
    return float('nan')
  return (m.argument_size_in_bytes + m.output_size_in_bytes +
          m.temp_size_in_bytes - m.alias_size_in_bytes) / 2 ** 20


def xla_flops(compiled) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per program
    cost = cost[0]
  return float(cost.get('flops', float('nan'))) if cost else float('nan')


def max_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------- shapes --
def apply_shapes(config, batch_size: int, seq_len: int):
  """A copy of `config` with the benchmark's batch and lengths."""
  config = copy.deepcopy(config)
  if batch_size:
    config.batch_size = batch_size
  if seq_len:
    if config.task == 'seq2seq':
      if config.data.source == 'synthetic':
        config.data.synthetic_max_len = seq_len
      else:
        config.data.max_input_length = seq_len
        config.data.max_target_length = seq_len
    else:
      config.data.max_length = seq_len
  return config


def step_shape(config) -> flops.StepShape:
  """The task's padded example (`Task.step_shape`), as train.py counts it."""
  return task_class(config).step_shape(config)


def shape_text(shape: flops.StepShape) -> str:
  return ', '.join(f'{k} {v}' for k, v in vars(shape).items() if v)


def synthetic_batch(config, batch_size: int, seed: int = 0) -> dict:
  """Random tokens in [4, vocab) of the task's batch layout, no padding."""
  rng = np.random.default_rng(seed)
  vocab = config.model.vocab_size
  shape = step_shape(config)
  ids = lambda length: rng.integers(4, vocab, (batch_size, length),
                                    dtype=np.int32)
  if config.task == 'seq2seq':
    return {'inputs': ids(shape.source_len), 'targets': ids(shape.target_len)}
  s = shape.seq_len
  if config.task == 'causal_lm':
    return {'inputs': ids(s), 'targets': ids(s),
            'weights': np.ones((batch_size, s), np.float32)}
  if config.task == 'bert_pretraining':
    masked = rng.random((batch_size, s)) < 0.15
    masked[:, 0] = False
    return {'input_ids': ids(s),
            'token_type_ids': (np.arange(s) >= s // 2).astype(np.int32)[
                None].repeat(batch_size, 0),
            'attention_mask': np.ones((batch_size, s), np.int32),
            'mlm_targets': ids(s), 'mlm_weights': masked.astype(np.float32),
            'nsp_labels': rng.integers(0, 2, batch_size, dtype=np.int32)}
  raise UserError(f'no synthetic batch for config.task={config.task!r}')


# ------------------------------------------------------------- training --
def compile_step(config, donate: bool = True):
  """train_steps.train_step for `config` (mode 'mesh'), compiled on
  synthetic batches -> (task, MeshParallel, compiled, (state, batch, rng),
  seconds)."""
  task = get_task(config)
  dp = parallel.for_config(config, task, mode='mesh')
  optimizer, _ = optimizers.make_optimizer(config.optimizer,
                                           config.num_train_steps)
  state = dp.place_state(loop.initial_state(task, optimizer, config, dp))
  batch = dp.shard(synthetic_batch(config, config.batch_size))
  rng = jax.random.key(1)
  step_fn = dp.compile(functools.partial(
      train_steps.train_step, task=task, optimizer=optimizer, axis_name=None,
      grad_accum_steps=config.grad_accum_steps),
      num_sharded=1, donate_state=donate, returns_state=True)
  start = time.perf_counter()
  compiled = step_fn.lower(state, batch, rng).compile()
  return (task, dp, compiled, (state, batch, rng),
          time.perf_counter() - start)


def time_training(config, *, steps: int, warmup: int, peak: float,
                  donate: bool = True, sync_every_step: bool = False,
                  prng_impl: str = '', paired_peak=None) -> dict:
  """Compiles train_steps.train_step for `config` and times it (module doc).

  paired_peak: on a shared CPU, a function timing the peak matmul once;
    it runs after every step and each step's MFU uses the peak measured
    next to it (the median of these ratios is reported), so that load from
    other processes cancels out.
  prng_impl: e.g. 'unsafe_rbg' sets jax_default_prng_impl for this run (the
  environment variable JAX_DEFAULT_PRNG_IMPL does the same for train.py).
  """
  if prng_impl:
    previous = jax.config.jax_default_prng_impl
    jax.config.update('jax_default_prng_impl', prng_impl)
    try:
      return time_training(config, steps=steps, warmup=warmup, peak=peak,
                           donate=donate, sync_every_step=sync_every_step,
                           paired_peak=paired_peak)
    finally:
      jax.config.update('jax_default_prng_impl', previous)
  config = copy.deepcopy(config)
  config.parallelism = 'mesh'
  task, dp, compiled, (state, batch, rng), compile_s = compile_step(
      config, donate)
  for _ in range(warmup):
    state, _ = compiled(state, batch, rng)
  jax.block_until_ready(state)
  times, peaks = [], []
  for _ in range(steps):
    t = time.perf_counter()
    state, metrics = compiled(state, batch, rng)
    if sync_every_step:  # one host fetch per step, as log_every=1 would do
      float(metrics['loss'])
    else:
      jax.block_until_ready(state)
    times.append(time.perf_counter() - t)
    if paired_peak:
      peaks.append(paired_peak())
  step_s = statistics.median(times)
  model_cfg = task.model_config
  shape = step_shape(config)
  model_flops = task.train_flops(model_cfg, config, config.batch_size)
  if paired_peak:  # MFU of each step against the matmul right after it
    mfu = statistics.median(model_flops / t / p for t, p in zip(times, peaks))
    peak = statistics.median(peaks)
  else:
    mfu = flops.mfu(model_flops, step_s, peak)
  return dict(compile_s=compile_s, step_s=step_s, peak=peak,
              tokens_per_s=config.batch_size * shape.tokens / step_s,
              memory_mb=memory_mb(compiled), model_flops=model_flops,
              # cost_analysis is of one device's share of the SPMD program.
              xla_flops=xla_flops(compiled) * dp.num_devices,
              mfu=mfu, loss=float(metrics['loss']) / max(float(metrics['weight']), 1))


def row(name: str, r: dict) -> str:
  """One markdown row; missing figures stay empty."""
  def cell(key, fmt, scale=1.0):
    value = r.get(key)
    return '' if value is None else fmt.format(value * scale)
  return (f'| {name} | {cell("compile_s", "{:.1f}")} | '
          f'{cell("step_s", "{:,.1f}", 1e3)} | '
          f'{cell("tokens_per_s", "{:,.0f}")} | '
          f'{cell("memory_mb", "{:,.0f}")} | '
          f'{cell("model_flops", "{:,.1f}", 1e-9)} | '
          f'{cell("xla_flops", "{:,.1f}", 1e-9)} | '
          f'{cell("peak", "{:,.0f}", 1e-9)} | {cell("mfu", "{:.1%}")} |')


# ------------------------------------------------------------- decoding --
def time_decoding(config, batch_size: int, beam_size: int,
                  repeats: int = 3) -> dict:
  """Output tokens/s of task.predict (encoder-decoder) or of sampling
  (decoder LM), `seq_len` tokens per row."""
  config = copy.deepcopy(config)
  config.decode.beam_size = beam_size
  task = get_task(config)
  params = jax.jit(task.init_variables)(jax.random.key(0))['params']
  batch = synthetic_batch(config, batch_size, seed=1)
  if config.task == 'seq2seq':
    task.eos_id = -1  # random weights must not stop early
    length = step_shape(config).target_len
    config.decode.max_decode_len = length
    fn = jax.jit(task.predict)
    args = (params, {'inputs': jnp.asarray(batch['inputs'])})
    new_tokens = batch_size * length
  elif config.task == 'causal_lm':
    length = step_shape(config).seq_len
    prompt = jnp.asarray(batch['inputs'][:, :1])
    fn = jax.jit(lambda p, x: generation.generate(
        task.model_config, p, x, jax.random.key(0), max_decode_len=length,
        temperature=1.0, top_k=0, bos_id=1)['tokens'])
    args = (params, prompt)
    new_tokens = batch_size * (length - 1)
  else:
    return {}
  start = time.perf_counter()
  compiled = fn.lower(*args).compile()
  compile_s = time.perf_counter() - start
  jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t)
  step_s = statistics.median(times)
  return dict(compile_s=compile_s, step_s=step_s,
              tokens_per_s=new_tokens / step_s, memory_mb=memory_mb(compiled))


# ---------------------------------------------------------------- sweeps --
KNOBS = (  # (label, config overrides, time_training kwargs)
    ('baseline (float32, einsum, no remat, loop, donated)', {}, {}),
    ('model.dtype=bfloat16', {'model.dtype': 'bfloat16'}, {}),
    ('model.attention_impl=fused', {'model.attention_impl': 'fused'}, {}),
    ('model.remat_policy=full', {'model.remat_policy': 'full'}, {}),
    ('model.remat_policy=save_dots', {'model.remat_policy': 'save_dots'}, {}),
    ('model.scan_layers=True', {'model.scan_layers': True}, {}),
    ('grad_accum_steps=4', {'grad_accum_steps': 4}, {}),
    ('no buffer donation', {}, {'donate': False}),
    ('host fetch every step (log_every=1)', {}, {'sync_every_step': True}),
    ('model.dropout_bits=32', {'model.dropout_bits': 32}, {}),
    ('model.dropout_bits=8', {'model.dropout_bits': 8}, {}),
    ('loss_chunk_length=0', {'loss_chunk_length': 0}, {}),
    ('loss_chunk_length=16', {'loss_chunk_length': 16}, {}),
)
NO_DROPOUT = {'model.dropout_rate': 0.0, 'model.attention_dropout_rate': 0.0,
              'model.activation_dropout_rate': 0.0}
CAUSES = (  # where the time goes that is not matmul FLOPs
    ('as configured', {}, {}),
    ('32-bit dropout draws, materialised logits (flax/optax defaults)',
     {'model.dropout_bits': 32, 'loss_chunk_length': 0}, {}),
    ('model.dropout_bits=32 only', {'model.dropout_bits': 32}, {}),
    ('loss_chunk_length=0 only', {'loss_chunk_length': 0}, {}),
    ('no dropout', NO_DROPOUT, {}),
    ('JAX_DEFAULT_PRNG_IMPL=unsafe_rbg', {}, {'prng_impl': 'unsafe_rbg'}),
    ('model.dtype=bfloat16', {'model.dtype': 'bfloat16'}, {}),
)


def with_overrides(config, overrides: dict):
  config = copy.deepcopy(config)
  for key, value in overrides.items():
    node = config
    *path, last = key.split('.')
    for part in path:
      node = node[part]
    node[last] = value
  if overrides.get('model.attention_impl') == 'fused':
    config.model.attention_dropout_rate = 0.0
  return config


def scan_compile_rows(config, peak, out):
  """Compile time of the same model at 24 layers, looped and scanned."""
  for scan in (False, True):
    cfg = with_overrides(config, {'model.num_layers': 24,
                                  'model.scan_layers': scan})
    r = time_training(cfg, steps=2, warmup=1, peak=peak)  # compile time only
    out(row(f'24 layers, scan_layers={scan}', r))


# ---------------------------------------------------------------- torch --
def torch_model(config):
  """The same network in PyTorch: nn.Transformer + shared embeddings + tied
  output (encoder-decoder), BertForPreTraining, or GPT2LMHeadModel."""
  import transformers  # pylint: disable=g-import-not-at-top
  cfg = task_model_config(config)
  if config.task == 'seq2seq':
    return _torch_seq2seq_class()(cfg)
  if config.task == 'bert_pretraining':
    return transformers.BertForPreTraining(transformers.BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.d_ff, hidden_act='gelu',
        hidden_dropout_prob=cfg.dropout_rate,
        attention_probs_dropout_prob=cfg.attention_dropout_rate,
        max_position_embeddings=cfg.max_len,
        type_vocab_size=cfg.type_vocab_size,
        layer_norm_eps=cfg.layer_norm_epsilon))
  if config.task == 'causal_lm':
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.max_len,
        n_embd=cfg.d_model, n_layer=cfg.num_layers, n_head=cfg.num_heads,
        n_inner=cfg.d_ff, activation_function='gelu_new',
        resid_pdrop=cfg.dropout_rate, embd_pdrop=cfg.dropout_rate,
        attn_pdrop=cfg.attention_dropout_rate,
        layer_norm_epsilon=cfg.layer_norm_epsilon))
  raise UserError(f'no PyTorch model for config.task={config.task!r}')


def _torch_seq2seq_class():
  """Defined on demand: torch is imported only with --compare_torch."""
  import torch  # pylint: disable=g-import-not-at-top
  from models.embeddings import sinusoidal_positions  # pylint: disable=g-import-not-at-top

  class TorchSeq2Seq(torch.nn.Module):
    """torch.nn.Transformer with one embedding for source, target, output."""

    def __init__(self, cfg):
      super().__init__()
      self.cfg = cfg
      self.embedding = torch.nn.Embedding(cfg.vocab_size, cfg.d_model)
      self.register_buffer('positions', torch.from_numpy(
          sinusoidal_positions(cfg.max_len, cfg.d_model)))
      self.transformer = torch.nn.Transformer(
          cfg.d_model, cfg.num_heads, cfg.num_layers, cfg.decoder_layers,
          cfg.d_ff, cfg.dropout_rate, activation=cfg.activation,
          layer_norm_eps=cfg.layer_norm_epsilon, batch_first=True,
          norm_first=cfg.norm_position == 'pre')

    def embed(self, ids):
      return (self.embedding(ids) * self.cfg.d_model ** 0.5 +
              self.positions[:ids.shape[1]])

    def encode(self, src):
      return self.transformer.encoder(self.embed(src))

    def decode(self, memory, tgt_in):
      mask = torch.nn.Transformer.generate_square_subsequent_mask(
          tgt_in.shape[1], device=tgt_in.device)
      y = self.transformer.decoder(self.embed(tgt_in), memory, tgt_mask=mask,
                                   tgt_is_causal=True)
      return torch.nn.functional.linear(y, self.embedding.weight)

    def forward(self, src, tgt_in):
      return self.decode(self.encode(src), tgt_in)

  return TorchSeq2Seq


def torch_session(config, batch_size: int, bf16_autocast: bool):
  """The same network, optimiser and batch in PyTorch -> (train_step,
  decode_step, device). train_step() runs one update (under
  torch.autocast(bf16) if `bf16_autocast`) and waits for it."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count())  # XLA's CPU client uses every core
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  autocast = lambda: torch.autocast(device, torch.bfloat16,
                                    enabled=bf16_autocast)
  torch.manual_seed(0)
  model = torch_model(config).to(device).train()
  opt_cfg = config.optimizer
  adam = torch.optim.AdamW if opt_cfg.name == 'adamw' else torch.optim.Adam
  optimizer = adam(model.parameters(), lr=1e-4, betas=(opt_cfg.b1, opt_cfg.b2),
                   eps=opt_cfg.eps, weight_decay=opt_cfg.weight_decay)
  batch = {k: torch.from_numpy(v).to(device)
           for k, v in synthetic_batch(config, batch_size).items()}

  def loss_fn():
    if config.task == 'seq2seq':
      targets = batch['targets']
      tgt_in = torch.nn.functional.pad(targets, (1, 0))[:, :-1]
      logits = model(batch['inputs'], tgt_in)
      return torch.nn.functional.cross_entropy(
          logits.flatten(0, 1).float(), targets.flatten().long(),
          label_smoothing=config.label_smoothing)
    if config.task == 'bert_pretraining':
      labels = torch.where(batch['mlm_weights'] > 0, batch['mlm_targets'],
                           -100).long()
      return model(input_ids=batch['input_ids'].long(),
                   token_type_ids=batch['token_type_ids'].long(),
                   attention_mask=batch['attention_mask'].long(),
                   labels=labels,
                   next_sentence_label=batch['nsp_labels'].long()).loss
    ids = batch['inputs'].long()
    return model(input_ids=ids, labels=ids).loss

  def sync():
    if device == 'cuda':
      torch.cuda.synchronize()

  def train_step():
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with autocast():
      loss = loss_fn()
    loss.backward()
    optimizer.step()
    sync()
    return float(loss.detach())

  shape = step_shape(config)
  if config.task == 'seq2seq':
    def run_decode():  # nn.Transformer has no KV cache: the prefix reruns
      src = batch['inputs']
      memory = model.encode(src)
      ys = torch.zeros((src.shape[0], 1), dtype=torch.long, device=device)
      for _ in range(shape.target_len):
        next_ids = model.decode(memory, ys)[:, -1].argmax(-1)
        ys = torch.cat([ys, next_ids[:, None]], 1)
      return ys
  else:
    def run_decode():
      return model.generate(
          batch['inputs'][:, :1].long(), do_sample=True, top_k=0,
          max_new_tokens=shape.seq_len - 1, min_new_tokens=shape.seq_len - 1,
          use_cache=True, pad_token_id=0)

  def decode_step():
    model.eval()
    with torch.no_grad(), autocast():
      run_decode()
    sync()
  return train_step, decode_step, device


def torch_decode_row(config, batch_size: int, decode_step, bf16: bool,
                     out) -> dict:
  """Times PyTorch decoding (the median of 2 runs after one) as a row."""
  import torch  # pylint: disable=g-import-not-at-top
  shape = step_shape(config)
  if config.task == 'seq2seq':
    name, new_tokens = 'decode greedy', batch_size * shape.target_len
  else:
    name, new_tokens = 'decode sample', batch_size * (shape.seq_len - 1)
  times = []
  for i in range(3):
    t = time.perf_counter()
    decode_step()
    if i:
      times.append(time.perf_counter() - t)
  step_s = statistics.median(times)
  r = dict(step_s=step_s, tokens_per_s=new_tokens / step_s)
  suffix = ' (bf16 autocast)' if bf16 else ''
  out(row(f'torch {torch.__version__} {name}{suffix}', r))
  return {name: r}


def other_dtype(dtype: str) -> str:
  return 'float32' if dtype == 'bfloat16' else 'bfloat16'


def contestants(config) -> dict:
  """{label: () -> runner} for ours (and, with --both_dtypes, ours in the
  other dtype), PyTorch float32 and PyTorch under bf16 autocast."""
  import torch  # pylint: disable=g-import-not-at-top
  ours_dtype = config.model.dtype
  dtypes = [ours_dtype] + ([other_dtype(ours_dtype)] if _BOTH.value else [])
  factories = {}
  for dtype in sorted(dtypes, key=lambda d: d != 'float32'):
    factories[f'ours train {dtype}'] = functools.partial(
        ours_runner, with_overrides(config, {'model.dtype': dtype}))
  for bf16 in (False, True):
    def torch_runner(bf16=bf16):
      train_step, _, _ = torch_session(config, config.batch_size, bf16)
      return (lambda: (_timed(train_step), None)), {}
    label = 'bf16 autocast' if bf16 else 'float32'
    factories[f'torch {torch.__version__} train {label}'] = torch_runner
  return factories


def side_by_side(config, peak: float, paired_peak, out) -> tuple:
  """Times every contestant: by default in this process, one step of each
  per round, so that load from other processes falls on all of them alike;
  with --own_processes each alone in a child process, one after the other
  (--rounds times). Returns ({label: result dict}, lines for after the
  table: each contestant's step time per round)."""
  factories = contestants(config)
  notes = []
  if _OWN_PROCESSES.value:
    if _ROUNDS.value < 1:
      raise app.UsageError(f'--rounds={_ROUNDS.value}: must be at least 1')
    rounds = {label: [] for label in factories}
    for _ in range(_ROUNDS.value):
      for label in factories:
        rounds[label].append(in_own_process(label))
    results = {label: median_round(runs) for label, runs in rounds.items()}
    if _ROUNDS.value > 1:
      notes = [f'{label}: step ms per round, in the order run: '
               + ', '.join(f'{r["step_s"] * 1e3:,.1f}' for r in runs)
               for label, runs in rounds.items()]
  else:
    results = interleave({label: make() for label, make in factories.items()},
                         config, peak, paired_peak)
  for label, r in results.items():
    out(row(label, r))
  return results, notes


def median_round(runs: list) -> dict:
  """The result of the round with the median step time (the slower of the
  middle two for an even count)."""
  return sorted(runs, key=lambda r: r['step_s'])[len(runs) // 2]


def in_own_process(label: str) -> dict:
  """Reruns this script for one contestant and returns its result."""
  with tempfile.TemporaryDirectory() as tmp:
    result_path = os.path.join(tmp, 'result.json')
    subprocess.run([sys.executable, os.path.abspath(__file__), *sys.argv[1:],
                    f'--contestant={label}', f'--contestant_json={result_path}',
                    '--noown_processes', '--results_file=', '--loss_steps=0'],
                   check=True, stdout=subprocess.DEVNULL)
    with open(result_path, encoding='utf-8') as f:
      return json.load(f)


def time_one_contestant(config, peak: float, paired_peak):
  """The child's side of --own_processes."""
  factories = contestants(config)
  if _CONTESTANT.value not in factories:
    raise app.UsageError(f'--contestant={_CONTESTANT.value!r}: not one of '
                     f'{sorted(factories)}')
  label = _CONTESTANT.value
  result = interleave({label: factories[label]()}, config, peak,
                      paired_peak)[label]
  with open(_CONTESTANT_JSON.value, 'w', encoding='utf-8') as f:
    json.dump(result, f)


def _timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def ours_runner(config):
  """(step() -> (seconds, metrics), fixed results) for our train step."""
  config = copy.deepcopy(config)
  config.parallelism = 'mesh'
  _, dp, compiled, (state, batch, rng), compile_s = compile_step(config)
  holder = {'state': state}

  def step():
    start = time.perf_counter()
    holder['state'], metrics = compiled(holder['state'], batch, rng)
    jax.block_until_ready(holder['state'])
    return time.perf_counter() - start, metrics
  return step, dict(compile_s=compile_s, memory_mb=memory_mb(compiled),
                    xla_flops=xla_flops(compiled) * dp.num_devices)


def interleave(runners: dict, config, peak: float, paired_peak) -> dict:
  """Runs `--warmup` then `--steps` rounds of one step of every runner and
  returns {label: step_s, tokens_per_s, MFU, ...} (medians)."""
  for step, _ in runners.values():
    for _ in range(_WARMUP.value):
      step()
  times = {label: [] for label in runners}
  peaks = {label: [] for label in runners}
  for _ in range(_STEPS.value):
    for label, (step, _) in runners.items():
      times[label].append(step()[0])
      if paired_peak:
        peaks[label].append(paired_peak())
  shape = step_shape(config)
  model_flops = task_class(config).train_flops(
      task_model_config(config), config, config.batch_size)
  results = {}
  for label, (_, fixed) in runners.items():
    step_s = statistics.median(times[label])
    r = dict(fixed, step_s=step_s, model_flops=model_flops,
             tokens_per_s=config.batch_size * shape.tokens / step_s)
    if peaks[label]:
      r.update(peak=statistics.median(peaks[label]), mfu=statistics.median(
          model_flops / t / p for t, p in zip(times[label], peaks[label])))
    else:
      r.update(peak=peak, mfu=flops.mfu(model_flops, step_s, peak))
    results[label] = r
  return results


def ratio_lines(results: dict) -> list[str]:
  """tokens/s ratios of every pair the targets name."""
  def find(prefix):
    return next((r for k, r in results.items() if k.startswith(prefix)),
                None)
  pairs = (('ours bf16 / ours float32', 'ours train bfloat16',
            'ours train float32'),
           ('ours float32 / torch float32', 'ours train float32',
            'torch', ' train float32'),
           ('ours bf16 / torch bf16 autocast', 'ours train bfloat16',
            'torch', ' train bf16 autocast'))
  lines = []
  for pair in pairs:
    name, mine = pair[0], find(pair[1])
    if len(pair) == 3:
      theirs = find(pair[2])
    else:
      theirs = next((r for k, r in results.items()
                     if k.startswith(pair[2]) and k.endswith(pair[3])), None)
    if mine and theirs:
      lines.append(f'{name} training tokens/s: '
                   f'{mine["tokens_per_s"] / theirs["tokens_per_s"]:.2f}')
  return lines


def loss_check(config, steps: int, out):
  """Trains ours in float32 and in bf16 from the same initial parameters on
  the benchmark batch (memorised, so the loss falls), one step of each in
  turn; prints both losses every 10 steps and the largest relative gap."""
  losses = {}
  runners = {d: ours_runner(with_overrides(config, {'model.dtype': d}))[0]
             for d in ('float32', 'bfloat16')}
  for dtype in runners:
    losses[dtype] = []
  for _ in range(steps):
    for dtype, step in runners.items():
      metrics = step()[1]
      losses[dtype].append(float(metrics['loss']) /
                           max(float(metrics['weight']), 1.0))
  out(f'\nloss over {steps} steps (same init, same batch), float32 vs '
      'bfloat16:\n\n| step | float32 | bfloat16 | relative gap |\n'
      '|---:|---:|---:|---:|')
  for i in sorted({0, *range(9, steps, 10), steps - 1}):
    f32, bf16 = losses['float32'][i], losses['bfloat16'][i]
    out(f'| {i + 1} | {f32:.4f} | {bf16:.4f} | {abs(bf16 - f32) / f32:.2%} |')
  gap = max(abs(b - f) / f for f, b in zip(losses['float32'],
                                           losses['bfloat16']))
  out(f'\nlargest relative loss gap over {steps} steps: {gap:.2%}')


def task_model_config(config):
  return get_task(config).model_config


# -------------------------------------------------------------- machine --
ISA_FLAGS = ('avx512f', 'avx512_bf16', 'avx512_fp16', 'amx_tile', 'amx_bf16',
             'amx_int8')


def cpu_description() -> str:
  """'<lscpu model name>, N cores; ISA: <the flags of ISA_FLAGS it has>'."""
  model, flags_found = 'unknown CPU', set()
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        key, _, value = line.partition(':')
        if key.strip() == 'model name':
          model = value.strip()
        elif key.strip() == 'flags':
          flags_found = set(value.split())
          break
  except OSError:
    pass
  isa = ' '.join(f for f in ISA_FLAGS if f in flags_found) or 'none of ' + (
      ' '.join(ISA_FLAGS))
  return f'{model}, {os.cpu_count()} cores; ISA flags: {isa}'


def load_text() -> str:
  one, five, fifteen = os.getloadavg()
  return f'load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min)'


# ----------------------------------------------------------------- main --
def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = apply_shapes(_CONFIG.value, _BATCH.value, _SEQ_LEN.value)
  lines = []

  def out(line):
    print(line, flush=True)
    lines.append(line)

  peak, peak_source = peak_flops()
  paired = None if on_gpu() else matmul_timer(_PEAK_SIZE.value)
  if paired:
    peak_source += (' before the run; MFU pairs each step with the fastest '
                    'of 3 such dots')
  cfg = task_model_config(config)
  shape = step_shape(config)
  family = task_class(config).flops_family
  machine = (jax.devices()[0].device_kind if on_gpu() else cpu_description())
  out(f'\n{config.task} ({family}): {cfg.num_layers} layers, d_model '
      f'{cfg.d_model}, d_ff {cfg.d_ff}, heads {cfg.num_heads}, vocab '
      f'{cfg.vocab_size}, dtype {cfg.dtype}, attention {cfg.attention_impl}; '
      f'batch {config.batch_size} x {shape.tokens} tokens '
      f'({shape_text(shape)}); jax {jax.__version__} on {machine}; '
      f'peak {peak / 1e9:,.0f} GFLOP/s ({peak_source}); model FLOPs/token '
      f'{flops.train_flops_per_token(cfg, family, shape) / 1e6:,.1f} M; '
      f'{load_text()} at the start\n')
  out(HEADER)
  out(RULE)
  if _SWEEP.value in ('knobs', 'causes'):
    for label, overrides, kwargs in (KNOBS if _SWEEP.value == 'knobs'
                                     else CAUSES):
      r = time_training(with_overrides(config, overrides), steps=_STEPS.value,
                        warmup=_WARMUP.value, peak=peak,
                        paired_peak=paired, **kwargs)
      out(row(label, r))
  elif _SWEEP.value == 'scan_compile':
    scan_compile_rows(config, peak, out)
  elif _CONTESTANT.value:
    time_one_contestant(config, peak, paired)
    return
  elif _TORCH.value:
    results, notes = side_by_side(config, peak, paired, out)
    if _DECODE.value and config.task in ('seq2seq', 'causal_lm'):
      decode_rows(config, out, with_torch=True)
    out('')
    for line in ratio_lines(results) + notes:
      out(line)
  else:
    ours = time_training(config, steps=_STEPS.value, warmup=_WARMUP.value,
                         peak=peak, paired_peak=paired)
    out(row('ours train', ours))
    if _DECODE.value and config.task in ('seq2seq', 'causal_lm'):
      decode_rows(config, out, with_torch=False)
  if _LOSS_STEPS.value:
    loss_check(config, _LOSS_STEPS.value, out)
  out(f'\n{load_text()} at the end; process max RSS {max_rss_mb():,.0f} MB; '
      f'{time.strftime("%Y-%m-%d %H:%M")}')
  if _RESULTS_FILE.value:
    with open(_RESULTS_FILE.value, 'a', encoding='utf-8') as f:
      f.write('\n'.join(lines) + '\n')


def decode_rows(config, out, with_torch: bool):
  """Our decoding rows and, `with_torch`, PyTorch's (float32)."""
  decode_batch = _DECODE_BATCH.value or config.batch_size
  decoded = {}
  beams = (1, 4) if config.task == 'seq2seq' else (1,)
  for beam in beams:
    label = ('sample' if config.task == 'causal_lm' else
             'greedy' if beam == 1 else f'beam {beam}')
    decoded[label] = time_decoding(config, decode_batch, beam)
    out(row(f'ours decode {label} (batch {decode_batch})', decoded[label]))
  if not with_torch:
    return
  bf16 = config.model.dtype == 'bfloat16'
  _, decode_step, _ = torch_session(config, decode_batch, bf16)
  theirs = torch_decode_row(config, decode_batch, decode_step, bf16, out)
  for label, r in decoded.items():
    peer = theirs.get(f'decode {label}')
    if peer:
      out(f'ours/torch decode {label} tokens/s: '
          f'{r["tokens_per_s"] / peer["tokens_per_s"]:.2f}')


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  command.run(lambda argv: command.reporting_user_errors(lambda: main(argv)))
