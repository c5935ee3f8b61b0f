"""Predictions of a trained run: one output line per input line, by the
mode its task names (`Task.predict_mode`; predict.py's library).

  translate (seq2seq): a source text -> its translation or summary (beam
    search).
  generate (causal_lm): a prompt -> its continuation (greedy, or sampled).
  answer (extractive_qa): a JSON object {"question": ..., "context": ...}
    -> the answer span of the context.
  classify (classification): a sentence (a tab-separated pair if the run
    used pairs) -> the class and its probability, tab-separated
    (regression: the value).
Runs on built-in data take and give token ids as numbers ('5 9 7').
Newlines inside an output are written as '\\n' to keep one line per input.
"""
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np

from decoding import generation
from errors import UserError
from input_data import batching, pipelines, squad_features
import tasks


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


def translate(run, lines, *, batch_size, beam_size=None, alpha=None):
  """seq2seq: beam search (task.predict) over each source line."""
  decode = run.config.decode
  decode.beam_size = max(decode.beam_size if beam_size is None else
                         beam_size, 1)
  decode.alpha = decode.alpha if alpha is None else alpha
  tokenizer, data = run.tokenizer, run.config.data
  builtin = run.task.builtin_data
  width = data.synthetic_max_len if builtin else data.max_input_length
  sources = []
  for n, line in enumerate(lines, 1):
    ids = _encode(tokenizer, line, n) + ([] if builtin else
                                         [tokenizer.eos_id])
    source = {'inputs': np.asarray(ids, np.int32)}
    batching.truncate(source, {'inputs': width})
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
  stop_ids = () if run.task.builtin_data else (tokenizer.eos_id,)
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
    batching.truncate(feature, lengths)
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


MODES = {'translate': translate, 'generate': generate, 'answer': answer,
         'classify': classify}


def predict_lines(run, lines: list[str], **options) -> list[str]:
  """One output per input line, by the mode the run's task names;
  `options` are the mode's keyword arguments (batch_size, beam_size...)."""
  mode = run.task.predict_mode
  if mode is None:
    served = [name for name in tasks.NAMES
              if tasks.class_named(name).predict_mode]
    raise UserError(f"config.task={run.config.task!r}: predict serves "
                    f'{", ".join(served)}')
  return [_one_line(text) for text in MODES[mode](run, lines, **options)]
