"""grain input pipelines: one builder per task family, on the shared
skeleton of input_data/batching.py (the host split, training and
evaluation layouts, described there).

Config fields read here (`config.data`) are declared, with a comment and
the default each, in configs/base_config.data_config; the builders name the
fields they read.
Batch keys and shapes are documented on each builder.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from input_data import mlm_masking, packing, squad_features, text_sources
from input_data.batching import (Batches, eval_layout, host_batch_size,
                                  this_host, train_batches)


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
  cfg, host = data_config, this_host(process_index, process_count)
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
    return train_batches(examples, tokenize, cfg, seed=seed, host=host, batch_size=b,
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
  cfg, host = data_config, this_host(process_index, process_count)
  b = host_batch_size(batch_size, host[1])
  length = cfg.max_length
  examples = text_sources.load_split(cfg, split)
  key = cfg.text_key
  eos = tokenizer.eos_id
  if training and cfg.packing:
    def doc(ex):
      ids = np.asarray([eos] + tokenizer.encode(ex[key]) + [eos], np.int32)
      return {'inputs': ids[:-1], 'targets': ids[1:]}
    return train_batches(examples, doc, cfg, seed=seed, host=host, batch_size=b,
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
    return train_batches(np.arange(len(rows)), random_row, cfg, seed=seed,
                  host=host, batch_size=b, lengths={}, use_random=True)
  if training:
    return train_batches(np.arange(len(rows)), row, cfg, seed=seed, host=host,
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
  cfg, host = data_config, this_host(process_index, process_count)
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
    return train_batches(source, make, cfg, seed=seed, host=host, batch_size=b,
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
  cfg, host = data_config, this_host(process_index, process_count)
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
    return train_batches(examples, tokenize, cfg, seed=seed, host=host, batch_size=b,
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
  cfg, host = data_config, this_host(process_index, process_count)
  b = host_batch_size(batch_size, host[1])
  examples = text_sources.load_split(cfg, split)
  features = squad_features.make_features(
      examples, tokenizer, max_length=cfg.max_length,
      doc_stride=cfg.doc_stride, max_query_length=cfg.max_query_length)
  if training:
    out = train_batches(np.arange(len(features)), features.model_inputs, cfg,
                 seed=seed, host=host, batch_size=b, lengths={})
  else:
    out = eval_layout(
        np.arange(len(features)),
        [features.model_inputs(i) for i in range(len(features))], {},
        host=host, batch_size=b)
  out.features, out.examples = features, examples
  return out
