"""Throughput of the seq2seq input pipeline on Multi30k en-de.

Trains a SentencePiece model (unigram, --vocab_size) on the training text
into a temporary directory, builds `pipelines.seq2seq_batches` for the
train split, skips --warmup batches and times --num_batches more. Prints
batches/s, real (non-PAD) tokens/s and padded tokens/s (inputs + targets),
to compare with the training step's speed.

Command (from the repository root):
  python experiments/input_pipeline_benchmark.py --default_experiment
  DATA_DIR=../shared/data python experiments/input_pipeline_benchmark.py
  DATA_DIR=../shared/data python experiments/input_pipeline_benchmark.py \
      --packing

Results (2 CPU cores, AMD EPYC, no accelerator; grain 0.2.18; global batch
64, max length 64, vocab 8000, 300 timed batches after 20 warm-up):
  padded (default):       100 batches/s, 205,000 real tokens/s,
                          823,000 padded tokens/s (25% of slots are tokens)
  padded, read_threads=1: 120 batches/s, 245,000 real tokens/s
  --packing:              18 batches/s, 138,000 real tokens/s (92% fill:
                          one packed batch holds ~3.7 padded batches' tokens)
  SentencePiece training on 58k sentences: 2.6 s.
Against the training steps that consume them (same machine):
  --default_experiment: the default experiment's synthetic data delivers
    1,089 batches/s while its training step runs 46 steps/s: 23.5x
    (measured while another training run shared the 2 cores).
  Multi30k (configs/multi30k_en_de.py, packed): 18 batches/s delivered vs
    1.9 training steps/s in the 5,500-step run (experiments/multi30k.md):
    ~9.5x, and enough: that run's step rate equals the benchmark's step
    time on synthetic batches (0.53 s), so the model never waited for data.
The tokenizing threads contend for the GIL on 2 cores (1 thread is faster);
grain's Python first-fit packer is the packed pipeline's cost.
"""

import argparse
import os
import pathlib
import sys
import tempfile
import time


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from configs.base_config import data_config, tokenizer_config  # pylint: disable=g-import-not-at-top
from input_data import pipelines, text_sources, tokenizers  # pylint: disable=g-import-not-at-top


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data_dir', default=os.environ.get(
      'DATA_DIR', str(pathlib.Path(__file__).resolve().parents[2] / 'shared'
                      / 'data')))
  parser.add_argument('--global_batch', type=int, default=64)
  parser.add_argument('--max_length', type=int, default=64)
  parser.add_argument('--vocab_size', type=int, default=8000)
  parser.add_argument('--packing', action='store_true')
  parser.add_argument('--read_threads', type=int, default=2)
  parser.add_argument('--warmup', type=int, default=20)
  parser.add_argument('--num_batches', type=int, default=300)
  args = parser.parse_args()

  data = data_config(**dict(
      data_dir=args.data_dir, format='parallel',
      inputs_pattern='multi30k/{split}.en.gz',
      targets_pattern='multi30k/{split}.de.gz', max_examples=0,
      max_input_length=args.max_length, max_target_length=args.max_length,
      overlong='truncate', packing=args.packing, num_epochs=None,
      read_threads=args.read_threads))
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    train = text_sources.load_split(data, 'train')
    tok = tokenizers.build_tokenizer(
        tokenizer_config(**dict(
            kind='sentencepiece', vocab_size=args.vocab_size,
            model_type='unigram', character_coverage=1.0)),
        workdir, lambda: (t for e in train for t in (e['inputs'],
                                                     e['targets'])))
    print(f'SentencePiece training: {time.perf_counter() - t0:.1f} s')
    it = iter(pipelines.seq2seq_batches(
        data, tok, args.global_batch, seed=0, split='train', training=True))
    for _ in range(args.warmup):
      next(it)
    real = 0
    t0 = time.perf_counter()
    for _ in range(args.num_batches):
      batch = next(it)
      real += int((batch['inputs'] > 0).sum() + (batch['targets'] > 0).sum())
    dt = time.perf_counter() - t0
  padded = args.num_batches * args.global_batch * 2 * args.max_length
  print(f'global_batch={args.global_batch} max_length={args.max_length} '
        f'packing={args.packing} read_threads={args.read_threads} '
        f'cpus={os.cpu_count()}')
  print(f'{args.num_batches / dt:.1f} batches/s, {real / dt:,.0f} real '
        f'tokens/s, {padded / dt:,.0f} padded tokens/s '
        f'(fill {real / padded:.0%}), {len(train)} train pairs')
  print(f'counters: {it.counters}')


def time_iterator(it, warmup: int, count: int) -> float:
  """Batches per second of `it` after `warmup` batches."""
  for _ in range(warmup):
    next(it)
  t0 = time.perf_counter()
  for _ in range(count):
    next(it)
  return count / (time.perf_counter() - t0)


def default_experiment(args):
  """The default experiment's data (input_data/synthetic.py) against its own
  training step, both measured in this run on this machine."""
  import jax  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  from tasks import get_task  # pylint: disable=g-import-not-at-top
  import functools  # pylint: disable=g-import-not-at-top
  # pylint: disable=g-import-not-at-top
  from training import loop, optimizers, parallel
  from training import steps as train_steps

  config = default.get_config()
  task = get_task(config)
  dp = parallel.for_config(config, task)
  data = task.train_batches(None, config.batch_size)
  data_rate = time_iterator(data, args.warmup, args.num_batches)
  optimizer, _ = optimizers.make_optimizer(config.optimizer,
                                           config.num_train_steps)
  state = dp.place_state(loop.initial_state(task, optimizer, config,
                                                 dp))
  step = dp.compile(functools.partial(
      train_steps.train_step, task=task, optimizer=optimizer,
      axis_name=dp.axis_name, grad_accum_steps=1), num_sharded=1,
      donate_state=True, returns_state=True)
  batches = [dp.shard(next(data)) for _ in range(args.num_batches)]
  rng = jax.random.key(0)
  for batch in batches[:args.warmup]:
    state, metrics = step(state, batch, rng)
  jax.block_until_ready(metrics)
  t0 = time.perf_counter()
  for batch in batches:
    state, metrics = step(state, batch, rng)
  jax.block_until_ready(metrics)
  step_rate = args.num_batches / (time.perf_counter() - t0)
  print(f'default experiment: data {data_rate:.0f} batches/s, training step '
        f'{step_rate:.0f} steps/s, ratio {data_rate / step_rate:.1f}x '
        f'(batch {config.batch_size}, {jax.device_count()} device(s))')


if __name__ == '__main__':
  if '--default_experiment' in sys.argv:
    sys.argv.remove('--default_experiment')
    default_experiment(argparse.Namespace(warmup=20, num_batches=300))
  else:
    main()
