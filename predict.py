r"""Predictions of a trained workdir: one output line per input line.

  python predict.py --workdir=/tmp/m30k --input=test.en --output=test.de \
      --beam_size=4 --alpha=0.6
  echo "ROMEO:" | python predict.py --workdir=/tmp/shakespeare \
      --temperature=0.8 --top_k=40 --max_new_tokens=200 --seed=1
  python predict.py --workdir=/tmp/bert_qa --input=questions.jsonl
  python predict.py --workdir=/tmp/bert_cls < sentences.txt

The mode follows the run's config.task, with its own tokenizer and config:
  seq2seq: a source text -> its translation or summary (beam search).
  causal_lm: a prompt -> its continuation (greedy with --temperature=0, else
    sampled with --top_k / --top_p and --seed).
  extractive_qa: a JSON object {"question": ..., "context": ...} -> the
    answer span of the context.
  classification: a sentence (a tab-separated pair if the run used pairs)
    -> the class and its probability, tab-separated (regression: the value).
Runs on built-in data take and give token ids as numbers ('5 9 7').
Newlines inside an output are written as '\n' to keep one line per input.
"""
import functools
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from errors import UserError
import train
import trained_run
from decoding import generation
from input_data import pipelines, squad_features, text_sources

_INPUT = flags.DEFINE_string('input', '-', 'Input file; - reads stdin.')
# Not --batch_size: experiments/benchmark.py defines that, and the tests
# import both into one process (absl flags are global).
_BATCH_SIZE = flags.DEFINE_integer('inputs_per_batch', 16,
                                   'Inputs predicted together.')
_BEAM_SIZE = flags.DEFINE_integer(
    'beam_size', None, "seq2seq: beams (1: greedy; default: the run's "
    'config.decode.beam_size).')
_ALPHA = flags.DEFINE_float(
    'alpha', None, "seq2seq: length penalty ((5+len)/6)^alpha (default: the "
    "run's config.decode.alpha).")
_MAX_NEW_TOKENS = flags.DEFINE_integer('max_new_tokens', 64,
                                       'causal_lm: tokens to generate.')
_TEMPERATURE = flags.DEFINE_float('temperature', 0.0,
                                  'causal_lm: 0 is greedy.')
_TOP_K = flags.DEFINE_integer('top_k', 0, 'causal_lm: sample among the k '
                              'most likely tokens (0: all).')
_TOP_P = flags.DEFINE_float('top_p', 1.0, 'causal_lm: nucleus mass (1: all).')
_SEED = flags.DEFINE_integer('seed', 0, 'causal_lm: sampling seed.')
_START_TEXT = flags.DEFINE_string(
    'start_text', None, "causal_lm: the one-token text every generation "
    "starts from (default: the run's config.decode.start_text; '' is EOS).")


# ----------------------------------------------------------------- input --
def read_inputs(path: str) -> list[str]:
  """Lines of `path` (- : stdin), UTF-8; empty input fails in one line."""
  if path == '-':
    data = sys.stdin.buffer.read()
    try:
      lines = data.decode('utf-8').split('\n')
    except UnicodeDecodeError as e:
      line = data.count(b'\n', 0, e.start) + 1
      raise UserError(f'--input=-: invalid UTF-8 on line {line}') from None
    if lines[-1] == '':
      lines.pop()
    lines = [l.rstrip('\r') for l in lines]
  else:
    lines = text_sources.read_lines(path)
  if not any(l.strip() for l in lines):
    raise UserError(f'--input={path}: no input (the file is empty)')
  return lines


def check_output(path: str):
  """Fails in one line, before any prediction is made, if --output cannot
  be a file: a directory, or in a directory that does not exist."""
  if path == '-':
    return
  if os.path.isdir(path):
    raise UserError(f'--output={path} is a directory; give a file name')
  parent = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(parent):
    raise UserError(f'--output={path}: directory {parent} does not exist')


def _one_line(text: str) -> str:
  return text.replace('\r', '\\r').replace('\n', '\\n')


def _batches(rows: list, batch_size: int):
  """Chunks of `batch_size` rows; the last one is padded with copies of its
  first row so every chunk has one shape (one compilation)."""
  for begin in range(0, len(rows), batch_size):
    chunk = rows[begin:begin + batch_size]
    yield len(chunk), chunk + [chunk[0]] * (batch_size - len(chunk))


def _stack(features: list[dict], lengths: dict[str, int]) -> dict:
  return {k: np.stack([np.pad(f[k], (0, lengths[k] - len(f[k])))
                       for f in features]) for k in lengths}


def _encode(tokenizer, text: str, line: int) -> list[int]:
  try:
    return tokenizer.encode(text)
  except ValueError as e:  # built-in data: not a token id
    raise UserError(f'--input line {line}: {e}') from None


# ---------------------------------------------------------------- modes --
def translate(run, lines, *, batch_size, beam_size=None, alpha=None):
  """seq2seq: beam search (task.predict) over each source line."""
  decode = run.config.decode
  decode.beam_size = max(decode.beam_size if beam_size is None else
                         beam_size, 1)
  decode.alpha = decode.alpha if alpha is None else alpha
  tokenizer, data = run.tokenizer, run.config.data
  builtin = run.task.data.synthetic
  width = data.max_len if builtin else data.max_input_length
  sources = []
  for n, line in enumerate(lines, 1):
    ids = _encode(tokenizer, line, n) + ([] if builtin else
                                         [tokenizer.eos_id])
    source = {'inputs': np.asarray(ids, np.int32)}
    pipelines.truncate(source, {'inputs': width})
    sources.append(source)
  predict = jax.jit(run.task.predict)
  outputs = []
  for count, chunk in _batches(sources, batch_size):
    tokens = np.asarray(predict(run.params, _stack(chunk, {'inputs': width})))
    outputs += [tokenizer.decode(row) for row in tokens[:count]]
  return outputs


def generate(run, lines, *, batch_size, max_new_tokens, temperature=0.0,
             top_k=0, top_p=1.0, seed=0):
  """causal_lm: `max_new_tokens` after each prompt (or up to EOS)."""
  tokenizer = run.tokenizer
  prompts = [_encode(tokenizer, line, n) for n, line in enumerate(lines, 1)]
  width = max(len(p) for p in prompts)
  needed = width + max_new_tokens  # fed: BOS + all but the last token
  model_cfg = run.task.model_config
  # Learned positions end at model.max_len: past it, a window of the last
  # max_len tokens slides along (nanoGPT); other positions just go on.
  generate_fn = generation.generate
  if model_cfg.position_embedding == 'learned' and needed > model_cfg.max_len:
    generate_fn = generation.generate_sliding
  elif model_cfg.position_embedding != 'learned':
    model_cfg = model_cfg.replace(max_len=max(model_cfg.max_len, needed))
  stop_ids = () if run.task.data.synthetic else (tokenizer.eos_id,)
  sample = jax.jit(functools.partial(
      generate_fn, model_cfg, max_decode_len=needed,
      temperature=temperature, top_k=top_k, stop_ids=stop_ids,
      bos_id=run.task.bos_id, pad_id=0))
  rows = [np.pad(np.asarray(p, np.int32), (0, width - len(p))) for p in
          prompts]
  outputs, begin = [], 0
  for i, (count, chunk) in enumerate(_batches(rows, batch_size)):
    rng = jax.random.fold_in(jax.random.key(seed), i)
    tokens = np.asarray(sample(run.params, np.stack(chunk), rng,
                               top_p=top_p)['tokens'])
    for row, prompt in zip(tokens[:count], prompts[begin:begin + count]):
      new = row[len(prompt):len(prompt) + max_new_tokens]
      outputs.append(tokenizer.decode(new))
    begin += count
  return outputs


def _questions(lines) -> list[dict]:
  examples = []
  for n, line in enumerate(lines, 1):
    try:
      example = json.loads(line)
    except json.JSONDecodeError as e:
      raise UserError(f'--input line {n}: not JSON ({e.msg})') from None
    if not isinstance(example, dict) or not isinstance(
        example.get('question'), str):
      raise UserError(f'--input line {n}: no "question" (expected '
                      '{"question": ..., "context": ...})')
    if not isinstance(example.get('context'), str) or not example[
        'context'].strip():
      raise UserError(f'--input line {n}: a question without a context')
    examples.append({'id': str(n), 'question': example['question'],
                     'context': example['context']})
  return examples


def answer(run, lines, *, batch_size):
  """extractive_qa: the best span over every window of each context (the
  task's logits, squad_features.best_spans as its SQuAD scoring)."""
  examples = _questions(lines)
  data = run.config.data
  features = squad_features.make_features(
      examples, run.tokenizer, max_length=data.max_length,
      doc_stride=data.doc_stride, max_query_length=data.max_query_length)
  predict = jax.jit(run.task.predict)
  inputs = [features.model_inputs(i) for i in range(len(features))]
  start, end = [], []
  for count, chunk in _batches(inputs, batch_size):
    batch = {k: np.stack([f[k] for f in chunk]) for k in chunk[0]}
    out = predict(run.params, batch)
    start.append(np.asarray(out['start_logits'])[:count])
    end.append(np.asarray(out['end_logits'])[:count])
  answers = squad_features.best_spans(
      examples, features, np.concatenate(start), np.concatenate(end),
      max_answer_length=run.task.max_answer_length)
  return [answers[e['id']] for e in examples]


def classify(run, lines, *, batch_size):
  """classification: 'class<TAB>probability' (regression: the value)."""
  tokenizer, data = run.tokenizer, run.config.data
  keys = ('input_ids', 'token_type_ids', 'attention_mask')
  lengths = dict.fromkeys(keys, data.max_length)
  features = []
  for n, line in enumerate(lines, 1):
    text, tab, pair = line.partition('\t')
    if data.text_pair_key and not tab:
      raise UserError(f'--input line {n}: the run classifies sentence '
                      'pairs: give SENTENCE<TAB>SENTENCE')
    if not data.text_pair_key:
      text, pair = line, None
    try:
      feature = pipelines.sentence_features(tokenizer, text, pair)
    except ValueError as e:
      raise UserError(f'--input line {n}: {e}') from None
    pipelines.truncate(feature, lengths)
    features.append(feature)
  forward = jax.jit(run.task.forward)
  outputs = []
  for count, chunk in _batches(features, batch_size):
    logits = np.asarray(forward(run.params, _stack(chunk, lengths)))[:count]
    if run.task.regression:
      outputs += [f'{v:.4f}' for v in logits[:, 0]]
      continue
    probs = np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))
    outputs += [f'{p.argmax()}\t{p.max():.4f}' for p in probs]
  return outputs


MODES = {'seq2seq': translate, 'causal_lm': generate,
         'extractive_qa': answer, 'classification': classify}


def predict_lines(run, lines: list[str], **options) -> list[str]:
  """One output per input line, by the mode of the run's config.task;
  `options` are the mode's keyword arguments (batch_size, beam_size...)."""
  mode = MODES.get(run.config.task)
  if mode is None:
    raise UserError(f"config.task={run.config.task!r}: predict serves "
                    f'{", ".join(MODES)}')
  return [_one_line(text) for text in mode(run, lines, **options)]


def _options(task: str) -> dict:
  """The flags that the mode of `task` takes."""
  options = dict(batch_size=_BATCH_SIZE.value)
  if task == 'seq2seq':
    options.update(beam_size=_BEAM_SIZE.value, alpha=_ALPHA.value)
  elif task == 'causal_lm':
    options.update(max_new_tokens=_MAX_NEW_TOKENS.value,
                   temperature=_TEMPERATURE.value, top_k=_TOP_K.value,
                   top_p=_TOP_P.value, seed=_SEED.value)
  return options


def _with_start_text(config):
  if _START_TEXT.value is not None:
    config.decode.start_text = _START_TEXT.value
  return config


def main(argv):
  logging.set_verbosity(logging.WARNING)  # orbax logs every file it reads
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')

  def command():
    output = trained_run.OUTPUT.value or '-'
    check_output(output)
    lines = read_inputs(_INPUT.value)
    if _BATCH_SIZE.value < 1 or _MAX_NEW_TOKENS.value < 0:
      raise UserError('--inputs_per_batch must be >= 1 and --max_new_tokens '
                      '>= 0')
    run = trained_run.from_flags(_with_start_text)
    outputs = predict_lines(run, lines, **_options(run.config.task))
    text = ''.join(o + '\n' for o in outputs)
    if output == '-':
      sys.stdout.write(text)
    else:
      try:
        with open(output, 'w', encoding='utf-8') as f:
          f.write(text)
      except OSError as e:
        raise UserError(f'--output={output} cannot be written: '
                        f'{e.strerror or e}') from None

  trained_run.run_command(command)


if __name__ == '__main__':
  app.run(main, flags_parser=train.parse_flags)
