"""grain input pipelines: one builder per task family, same skeleton for all.

Training: the host's shard of the examples (every `process_count`-th one,
starting at `process_index`) -> shuffle from the seed (a new order each
epoch) -> repeat -> tokenize -> truncate/drop overlong (counted) -> pack or
pad -> batch of `global_batch // process_count` rows. The iterator state is
a small JSON dict (`get_state`/`set_state`), so a resumed run sees exactly
the batches the uninterrupted run would have seen.

Evaluation: every example exactly once. All hosts tokenize the whole split
(evaluation sets are small), lay it out in global batches and each takes its
rows; the last batch is filled with filler rows (`example_weight` 0.0,
`example_index` -1) so every host runs the same number of same-shape steps.
With `eval_length_buckets` examples are sorted by length and each batch is
padded to the smallest bucket that fits its global batch (few shapes to
compile, far less padding for decoding). Eval always truncates overlong
examples (dropping would skip examples) and counts them.

Config fields read here (`config.data`) are declared, with a comment and
the default each, in configs/base_config.data_config; the builders name the
fields they read.
Batch keys and shapes are documented on each builder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import grain
import jax
import ml_collections
import numpy as np

from errors import UserError
from input_data import mlm_masking, packing, squad_features, text_sources


def host_rows(global_batch: int, process_index: int | None = None,
              process_count: int | None = None) -> slice:
  """This host's rows of a global batch: the same split everywhere (the
  device placement in training/parallel.py and every pipeline use it)."""
  index, count = _host(process_index, process_count)
  if global_batch % count:
    raise UserError(f'global batch {global_batch} is not divisible by '
                     f'{count} processes')
  per_host = global_batch // count
  return slice(index * per_host, (index + 1) * per_host)


def host_batch_size(global_batch: int, process_count: int | None = None
                    ) -> int:
  """Rows each host feeds of a global batch."""
  rows = host_rows(global_batch, 0, process_count)
  return rows.stop - rows.start


class BatchIterator:
  """Yields batch dicts; `get_state()`/`set_state()` for checkpoints."""

  def __init__(self, dataset: grain.IterDataset,
               limit: packing.LengthLimitIterDataset | None):
    self._it = iter(dataset)
    self._limit_it = limit.last_iterator if limit is not None else None

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._it)

  def get_state(self) -> dict[str, Any]:
    return self._it.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    self._it.set_state(state)

  @property
  def counters(self) -> dict[str, int]:
    """Examples read, truncated and dropped so far (restored with state)."""
    return dict(self._limit_it.counters) if self._limit_it else {}


class Batches:
  """A re-iterable pipeline: each `iter()` starts a fresh `BatchIterator`.

  Eval pipelines also carry `num_batches`, `examples` (the raw example
  dicts, indexed by a batch's `example_index`) and `counters`.
  """

  def __init__(self, dataset, limit=None, *, examples=None, num_batches=None,
               counters=None):
    self.dataset, self._limit = dataset, limit
    self.examples, self.num_batches = examples, num_batches
    self.counters = counters or {}

  def __iter__(self) -> BatchIterator:
    return BatchIterator(self.dataset, self._limit)


def _host(process_index, process_count):
  return (jax.process_index() if process_index is None else process_index,
          jax.process_count() if process_count is None else process_count)


def _pad(ex: dict, lengths: dict[str, int]) -> dict:
  return {k: packing.pad_to(v, lengths[k]) if k in lengths else v
          for k, v in ex.items()}


def _train(source: Sequence, fn: Callable, cfg, *, seed, host, batch_size,
           lengths, use_random=False, pack=False, keep_last_token=True,
           finalize: Callable | None = None) -> Batches:
  """The training skeleton described in the module docstring."""
  index, count = host
  ds = grain.MapDataset.source(source)[index::count]
  if not len(ds):
    raise text_sources.DataError(
        f'host {index} of {count} has no examples: the split has '
        f'{len(source)} for {count} hosts')
  ds = ds.seed(seed).shuffle().repeat(cfg.num_epochs)
  ds = ds.random_map(fn) if use_random else ds.map(fn)
  it = ds.to_iter_dataset(grain.ReadOptions(
      num_threads=cfg.read_threads,
      prefetch_buffer_size=4 * batch_size))
  limit = None
  if lengths:
    it = limit = packing.LengthLimitIterDataset(
        it, lengths, cfg.overlong, keep_last_token)
  if pack:
    it = packing.pack(it, lengths, num_packing_bins=batch_size, seed=seed)
  else:
    it = it.map(lambda ex: _pad(ex, lengths))
  it = it.batch(batch_size, drop_remainder=True)
  if finalize is not None:
    it = it.map(finalize)
  return Batches(it, limit)


def eval_layout(examples: Sequence[dict] | None, features: list[dict],
                lengths: dict[str, int], *, batch_size: int,
                buckets: Sequence[int] | None = None,
                length_key: str | None = None,
                finalize: Callable | None = None, host=None) -> Batches:
  """The evaluation layout described in the module docstring.

  `features[i]` is the unpadded dict of arrays for `examples[i]`;
  `batch_size` is this host's rows; `buckets` pads each batch's
  `length_key` to the smallest bucket that fits.
  """
  index, count = host or _host(None, None)
  counters = {'examples': len(features), 'truncated': 0, 'dropped': 0}
  for f in features:
    counters['truncated'] += truncate(f, lengths)
  if counters['truncated']:
    logging.info('eval pipeline: %d of %d examples truncated to %s',
                 counters['truncated'], len(features), lengths)
  order = np.arange(len(features))
  if buckets:
    order = np.argsort([len(f[length_key]) for f in features], kind='stable')
  global_batch = batch_size * count
  num_batches = max(1, -(-len(features) // global_batch))
  slots = np.full((num_batches * global_batch,), -1, np.int64)
  slots[:len(order)] = order
  slots = slots.reshape(num_batches, global_batch)
  filler = {k: np.zeros((0,), np.int32) if k in lengths else np.zeros_like(v)
            for k, v in features[0].items()}

  def make_batch(b):
    rows = slots[b, index * batch_size:(index + 1) * batch_size]
    batch_lengths = dict(lengths)
    if buckets:  # Same bucket on every host: chosen from the global batch.
      longest = max((len(features[i][length_key]) for i in slots[b] if i >= 0),
                    default=1)
      fit = [x for x in sorted(buckets) if x >= longest]
      batch_lengths[length_key] = fit[0] if fit else lengths[length_key]
    exs = [_pad(features[i] if i >= 0 else filler, batch_lengths)
           for i in rows]
    batch = {k: np.stack([e[k] for e in exs]) for k in exs[0]}
    batch['example_index'] = rows.astype(np.int32)
    batch['example_weight'] = (rows >= 0).astype(np.float32)
    return finalize(batch) if finalize else batch

  ds = grain.MapDataset.range(num_batches).map(make_batch)
  return Batches(ds, examples=examples, num_batches=num_batches,
                 counters=counters)


# ---------------------------------------------------------------- seq2seq


def seq2seq_batches(data_config: ml_collections.ConfigDict, tokenizer,
                    batch_size: int, seed: int, split: str, *, training: bool,
                    process_index=None, process_count=None) -> Batches:
  """Translation / summarization batches.

  Fields: inputs_key, targets_key, max_input_length, max_target_length,
  packing, + module docstring.
  Batch: inputs [b, Ls], targets [b, Lt] int32, both ending with EOS then
  PAD; packed: also {inputs,targets}_{segmentation,position} [b, L*].
  Eval adds example_index, example_weight [b].
  """
  cfg, host = data_config, _host(process_index, process_count)
  b = host_batch_size(batch_size, host[1])
  examples = text_sources.load_split(cfg, split)
  in_key, tgt_key = cfg.inputs_key, cfg.targets_key
  eos = np.asarray([tokenizer.eos_id], np.int32)

  def tokenize(ex):
    return {'inputs': np.concatenate([tokenizer.encode(ex[in_key]), eos]
                                     ).astype(np.int32),
            'targets': np.concatenate([tokenizer.encode(ex[tgt_key]), eos]
                                      ).astype(np.int32)}

  lengths = {'inputs': cfg.max_input_length,
             'targets': cfg.max_target_length}
  if training:
    return _train(examples, tokenize, cfg, seed=seed, host=host, batch_size=b,
                  lengths=lengths, pack=cfg.packing)
  return eval_layout(examples, [tokenize(e) for e in examples], lengths,
                     host=host, batch_size=b, length_key='inputs',
                     buckets=cfg.eval_length_buckets)


# ---------------------------------------------------------- language model


def _lm_rows(batch):
  """Packed documents -> inputs/targets/weights with input segmentation."""
  return {'inputs': batch['inputs'], 'targets': batch['targets'],
          'weights': (batch['targets_segmentation'] > 0).astype(np.float32),
          'inputs_segmentation': batch['inputs_segmentation'],
          'inputs_position': batch['inputs_position']}


def lm_batches(data_config: ml_collections.ConfigDict, tokenizer,
               batch_size: int, seed: int, split: str, *, training: bool,
               process_index=None, process_count=None) -> Batches:
  """Causal LM batches of length L = `max_length`.

  Fields: text_key, max_length, packing, + module docstring.
  packing=False (and always for eval): documents, each followed by EOS, are
  one token stream cut into rows of L+1 overlapping by one token, so every
  token is a target exactly once. packing=True (training): each document
  becomes EOS + tokens + EOS, packed with segment ids (EOS acts as BOS).
  Batch: inputs, targets [b, L] int32 (targets = next tokens), weights
  [b, L] float32 (0 on padding and filler); packed: also
  inputs_segmentation, inputs_position [b, L]. Eval adds example_index,
  example_weight [b] (an "example" is a row).
  """
  cfg, host = data_config, _host(process_index, process_count)
  b = host_batch_size(batch_size, host[1])
  length = cfg.max_length
  examples = text_sources.load_split(cfg, split)
  key = cfg.text_key
  eos = tokenizer.eos_id
  if training and cfg.packing:
    def doc(ex):
      ids = np.asarray([eos] + tokenizer.encode(ex[key]) + [eos], np.int32)
      return {'inputs': ids[:-1], 'targets': ids[1:]}
    return _train(examples, doc, cfg, seed=seed, host=host, batch_size=b,
                  lengths={'inputs': length, 'targets': length}, pack=True,
                  keep_last_token=False,  # inputs/targets stay aligned.
                  finalize=_lm_rows)
  # The stream is tokenized up front: row boundaries depend on all counts.
  stream = np.concatenate([np.asarray(tokenizer.encode(ex[key]) + [eos],
                                      np.int32) for ex in examples])
  rows, valid = packing.chunk_stream(stream, length + 1, length)

  def row(i):
    return {'inputs': rows[i, :-1], 'targets': rows[i, 1:],
            'weights': valid[i, 1:].astype(np.float32)}

  if training and cfg.random_offsets:
    # nanoGPT's sampling: each row starts at a uniformly random token; an
    # "epoch" is as many rows as the stream has non-overlapping ones.
    def random_row(i, rng):
      del i
      start = rng.integers(0, max(len(stream) - length, 1))
      window = packing.pad_to(stream[start:start + length + 1], length + 1)
      return {'inputs': window[:-1], 'targets': window[1:],
              'weights': (window[1:] > 0).astype(np.float32)}
    return _train(np.arange(len(rows)), random_row, cfg, seed=seed,
                  host=host, batch_size=b, lengths={}, use_random=True)
  if training:
    return _train(np.arange(len(rows)), row, cfg, seed=seed, host=host,
                  batch_size=b, lengths={})
  return eval_layout(rows, [row(i) for i in range(len(rows))], {}, host=host,
                     batch_size=b)


# ------------------------------------------------------------------- BERT


def bert_pretraining_batches(data_config: ml_collections.ConfigDict,
                             tokenizer, batch_size: int, seed: int,
                             split: str, *, training: bool,
                             process_index=None, process_count=None
                             ) -> Batches:
  """Masked-LM + next-sentence-prediction batches (WordPiece tokenizer).

  Fields: document_boundary ('blank_line' | 'wikitext_heading', see
  text_sources.split_documents), max_length, mask_rate, max_predictions (0: no
  cap), whole_word_masking, nsp, next_sentence_prob, + module docstring.
  Pairs (nsp=True): a line and its true next line, or a random line of
  another document (mlm_masking); nsp=False: each line alone, [CLS] line
  [SEP], and nsp_labels 0. Masks are redrawn each epoch (the per-example
  generator depends on the position in the repeated stream) and are the
  same after a restore.
  Batch: input_ids, token_type_ids, attention_mask, mlm_targets [b, L]
  int32, mlm_weights [b, L] float32, nsp_labels [b] int32.
  """
  cfg, host = data_config, _host(process_index, process_count)
  b = host_batch_size(batch_size, host[1])
  lines = [e[cfg.text_key]
           for e in text_sources.load_split(cfg, split)]
  documents = text_sources.split_documents(lines, cfg.document_boundary)
  if cfg.nsp:
    instances = mlm_masking.nsp_instances(documents)
  else:  # every line is a row of its own
    instances = [(d, i) for d, doc in enumerate(documents)
                 for i in range(len(doc))]
  length = cfg.max_length
  special = [i for i in (tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id,
                         tokenizer.mask_id) if i is not None]
  continuation = None
  if cfg.whole_word_masking:
    continuation = np.asarray([tokenizer.token(i).startswith('##')
                               for i in range(tokenizer.vocab_size)])

  def segments(instance, rng):
    """(input_ids, token_type_ids, nsp_label) of one row, unpadded."""
    d, i = int(instance[0]), int(instance[1])
    if not cfg.nsp:
      ids, types = mlm_masking.build_single(tokenizer.encode(documents[d][i]),
                                            length, tokenizer.cls_id,
                                            tokenizer.sep_id)
      return ids, types, mlm_masking.IS_NEXT
    a, bb, label = mlm_masking.sample_sentence_pair(
        documents, d, i, rng, cfg.next_sentence_prob)
    ids, types = mlm_masking.build_pair(tokenizer.encode(a),
                                        tokenizer.encode(bb), length,
                                        tokenizer.cls_id, tokenizer.sep_id)
    return ids, types, label

  def make(instance, rng):
    ids, types, label = segments(instance, rng)
    ids, types = packing.pad_to(ids, length), packing.pad_to(types, length)
    masked, targets, weights = mlm_masking.mask_tokens(
        ids, rng, vocab_size=tokenizer.vocab_size, mask_id=tokenizer.mask_id,
        special_ids=special, mask_rate=cfg.mask_rate,
        max_predictions=cfg.max_predictions or None,
        is_continuation=None if continuation is None else continuation[ids])
    return {'input_ids': masked, 'token_type_ids': types,
            'attention_mask': (ids != tokenizer.pad_id).astype(np.int32),
            'mlm_targets': targets, 'mlm_weights': weights,
            'nsp_labels': np.int32(label)}

  source = np.asarray(instances, np.int64).reshape(-1, 2)
  if training:
    return _train(source, make, cfg, seed=seed, host=host, batch_size=b,
                  lengths={}, use_random=True)
  # Eval: one fixed draw per instance, from (seed, index).
  feats = [make(inst, np.random.default_rng([seed, i]))
           for i, inst in enumerate(source)]
  return eval_layout(instances, feats, {}, host=host, batch_size=b)


# ------------------------------------------- classification and extractive QA


def classification_batches(data_config: ml_collections.ConfigDict, tokenizer,
                           batch_size: int, seed: int, split: str, *,
                           training: bool, process_index=None,
                           process_count=None) -> Batches:
  """Sentence (pair) classification or regression, e.g. SST-2.

  Fields: text_key, text_pair_key ('': single sentences), label_key,
  label_type ('int' | 'float'), max_length, + module docstring. Truncation
  keeps the final [SEP] and cuts the end of the (second) sentence.
  Batch: input_ids, token_type_ids, attention_mask [b, L] int32, labels [b]
  int32 (float32 for regression). Eval adds example_index, example_weight.
  """
  cfg, host = data_config, _host(process_index, process_count)
  b = host_batch_size(batch_size, host[1])
  examples = text_sources.load_split(cfg, split)
  pair_key = cfg.text_pair_key
  label_dtype = np.float32 if cfg.label_type == 'float' else np.int32

  def tokenize(ex):
    return dict(sentence_features(tokenizer, ex[cfg.text_key],
                                  ex[pair_key] if pair_key else None),
                labels=label_dtype(float(ex[cfg.label_key])))

  lengths = dict.fromkeys(('input_ids', 'token_type_ids', 'attention_mask'),
                          cfg.max_length)
  if training:
    return _train(examples, tokenize, cfg, seed=seed, host=host, batch_size=b,
                  lengths=lengths)
  return eval_layout(examples, [tokenize(e) for e in examples], lengths,
                     host=host, batch_size=b, length_key='input_ids',
                     buckets=cfg.eval_length_buckets)


def sentence_features(tokenizer, text: str, pair: str | None = None
                      ) -> dict[str, np.ndarray]:
  """[CLS] text [SEP] (pair [SEP]): input_ids, token_type_ids (0, then 1
  for the pair) and attention_mask [l] int32, unpadded."""
  ids = [tokenizer.cls_id] + tokenizer.encode(text) + [tokenizer.sep_id]
  types = [0] * len(ids)
  if pair is not None:
    second = tokenizer.encode(pair) + [tokenizer.sep_id]
    ids, types = ids + second, types + [1] * len(second)
  ids = np.asarray(ids, np.int32)
  return {'input_ids': ids, 'token_type_ids': np.asarray(types, np.int32),
          'attention_mask': np.ones_like(ids)}


def truncate(feature: dict, lengths: dict[str, int]) -> bool:
  """Cuts `feature`'s arrays to `lengths`, keeping the last token
  (EOS/[SEP]) as training does; True if any was cut."""
  over = [k for k in lengths if len(feature[k]) > lengths[k]]
  for k in over:
    feature[k] = np.concatenate([feature[k][:lengths[k] - 1],
                                 feature[k][-1:]])
  return bool(over)


def qa_batches(data_config: ml_collections.ConfigDict, tokenizer,
               batch_size: int, seed: int, split: str, *, training: bool,
               process_index=None, process_count=None) -> Batches:
  """SQuAD windows (squad_features) as batches.

  Fields: max_length, doc_stride, max_query_length, + module docstring.
  Batch: input_ids, token_type_ids, attention_mask [b, L],
  start_positions, end_positions [b] int32. The returned Batches
  has `features` (squad_features.QAFeatures) and `examples`; eval batches'
  `example_index` is a feature index, so predictions go to
  `squad_features.best_spans(batches.examples, batches.features, ...)`.
  """
  cfg, host = data_config, _host(process_index, process_count)
  b = host_batch_size(batch_size, host[1])
  examples = text_sources.load_split(cfg, split)
  features = squad_features.make_features(
      examples, tokenizer, max_length=cfg.max_length,
      doc_stride=cfg.doc_stride, max_query_length=cfg.max_query_length)
  if training:
    out = _train(np.arange(len(features)), features.model_inputs, cfg,
                 seed=seed, host=host, batch_size=b, lengths={})
  else:
    out = eval_layout(
        np.arange(len(features)),
        [features.model_inputs(i) for i in range(len(features))], {},
        host=host, batch_size=b)
  out.features, out.examples = features, examples
  return out
