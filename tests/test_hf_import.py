"""Hugging Face checkpoint import: layouts, file formats, errors, restore,
and the converter package's shape (models/hf/: one module per
architecture on one interface, no import cycle)."""
import ast
import json
import os
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')
from safetensors.torch import save_file  # pylint: disable=g-import-not-at-top

import conftest
from models import hf as huggingface, registry
from training import pretrained

os.environ.setdefault('HF_HUB_OFFLINE', '1')


def bert_config(**kwargs):
  fields = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2,
                num_attention_heads=4, intermediate_size=48,
                max_position_embeddings=24, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0)
  return transformers.BertConfig(**{**fields, **kwargs})


def write_checkpoint(path, config, state, architecture, fmt='safetensors'):
  """config.json + weights, as save_pretrained lays them out."""
  os.makedirs(path, exist_ok=True)
  config.architectures = [architecture]
  config.save_pretrained(path)
  state = {k: v.detach().contiguous() for k, v in state.items()}
  if fmt == 'safetensors':
    save_file(state, os.path.join(path, 'model.safetensors'))
  else:
    torch.save(state, os.path.join(path, 'pytorch_model.bin'))
  return str(path)


@pytest.fixture(scope='module')
def bert_model():
  torch.manual_seed(0)
  return transformers.BertModel(bert_config()).eval()


@pytest.fixture(scope='module')
def pretraining_dir(tmp_path_factory):
  torch.manual_seed(1)
  model = transformers.BertForPreTraining(bert_config())
  path = str(tmp_path_factory.mktemp('bert_pretraining'))
  model.save_pretrained(path)
  return path


def _flatten(tree, prefix=()):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, prefix + (key,)))
    else:
      out[prefix + (key,)] = value
  return out


def test_import_gives_config_params_and_registry_name(pretraining_dir):
  cfg, params, name = huggingface.load_hf_checkpoint(pretraining_dir)
  assert name == 'bert_pretraining'
  assert (cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.d_ff) == (32, 2, 4,
                                                                    48)
  assert (cfg.max_len, cfg.type_vocab_size, cfg.activation) == (24, 2, 'gelu')
  assert cfg.layer_norm_epsilon == 1e-12 and cfg.norm_position == 'post'
  expected = registry.param_shapes(name, cfg)
  assert jax.tree.map(lambda x: x.shape, params) == jax.tree.map(
      lambda x: x.shape, expected)


def test_old_layouts_bin_files_and_bert_prefix_load_the_same(tmp_path,
                                                            bert_model):
  state = bert_model.state_dict()
  plain = write_checkpoint(tmp_path / 'plain', bert_model.config, state,
                           'BertModel')
  # Old checkpoints: `bert.` prefix, gamma/beta LayerNorms, a .bin file.
  old_state = {'bert.' + k.replace('LayerNorm.weight', 'LayerNorm.gamma')
               .replace('LayerNorm.bias', 'LayerNorm.beta'): v
               for k, v in state.items()}
  old = write_checkpoint(tmp_path / 'old', bert_model.config, old_state,
                         'BertModel', fmt='bin')
  a = huggingface.load_hf_checkpoint(plain)
  b = huggingface.load_hf_checkpoint(old)
  assert a.model_name == b.model_name == 'bert'
  fa, fb = _flatten(a.params), _flatten(b.params)
  assert fa.keys() == fb.keys()
  for k in fa:
    np.testing.assert_array_equal(fa[k], fb[k])


def test_bfloat16_checkpoint_loads_as_float32(tmp_path, bert_model):
  state = {k: v.to(torch.bfloat16) for k, v in
           bert_model.state_dict().items()}
  path = write_checkpoint(tmp_path / 'bf16', bert_model.config, state,
                          'BertModel')
  _, params, _ = huggingface.load_hf_checkpoint(path)
  table = params['token_embedding']['embedding']
  assert table.dtype == jnp.float32
  np.testing.assert_array_equal(
      table, state['embeddings.word_embeddings.weight'].float().numpy())


def test_overrides_give_scanned_bfloat16_models(pretraining_dir):
  cfg, params, name = huggingface.load_hf_checkpoint(
      pretraining_dir, scan_layers=True, param_dtype='bfloat16')
  kernel = params['bert']['stack']['layers']['attention']['query']['kernel']
  assert kernel.shape == (2, 32, 4, 8) and kernel.dtype == jnp.bfloat16
  ids = np.arange(1, 11)[None]
  out = jax.jit(registry.build(name, cfg).apply)({'params': params}, ids)
  assert out['mlm_logits'].shape == (1, 10, 60)


def test_unsupported_architecture_names_unexpected_tensors(tmp_path):
  torch.manual_seed(2)
  model = transformers.BertForMultipleChoice(bert_config())
  model.save_pretrained(str(tmp_path))
  with pytest.raises(huggingface.CheckpointMismatchError) as error:
    huggingface.load_hf_checkpoint(str(tmp_path))
  lines = str(error.value).splitlines()
  assert 'BertForMultipleChoice' in lines[0] and "'bert'" in lines[0]
  assert lines[1] == '  unexpected tensors (2) classifier.bias, classifier.weight'
  assert len(lines) == 2


def test_missing_tensors_are_named_and_long_lists_truncated(tmp_path,
                                                           bert_model):
  state = dict(bert_model.state_dict())
  del state['encoder.layer.1.output.dense.weight']
  state['encoder.layer.0.attention.self.rotary.weight'] = torch.zeros(2)
  path = write_checkpoint(tmp_path / 'one', bert_model.config, state,
                          'BertModel')
  with pytest.raises(huggingface.CheckpointMismatchError) as error:
    huggingface.load_hf_checkpoint(path)
  lines = str(error.value).splitlines()
  assert lines[1:] == [
      '  unexpected tensors (1) encoder.layer.0.attention.self.rotary.weight',
      '  missing parameters (1) stack/layers_1/ffn/wo/kernel']

  config = bert_config(num_hidden_layers=4)  # but only 2 layers of tensors
  path = write_checkpoint(tmp_path / 'deeper', config,
                          bert_model.state_dict(), 'BertModel')
  with pytest.raises(huggingface.CheckpointMismatchError) as error:
    huggingface.load_hf_checkpoint(path)
  lines = str(error.value).splitlines()
  assert len(lines) == 2
  assert lines[1].startswith('  missing parameters (32) stack/layers_2/')
  assert lines[1].endswith(', ... and 24 more')


def test_shape_mismatch_names_the_parameter_and_both_shapes(tmp_path,
                                                           bert_model):
  config = bert_config(intermediate_size=40)  # tensors have 48
  path = write_checkpoint(tmp_path / 'wide', config, bert_model.state_dict(),
                          'BertModel')
  with pytest.raises(huggingface.CheckpointMismatchError, match=re.escape(
      'parameter stack/layers_0/ffn/wi/bias expects shape (40,) but tensor '
      'encoder.layer.0.intermediate.dense.bias gives (48,)')):
    huggingface.load_hf_checkpoint(path)


def test_unknown_model_type_and_missing_files_fail_clearly(tmp_path):
  (tmp_path / 'config.json').write_text(json.dumps(
      {'model_type': 'roberta', 'architectures': ['RobertaModel']}))
  with pytest.raises(ValueError, match="model_type 'roberta' is not supported"):
    huggingface.load_hf_checkpoint(str(tmp_path))
  with pytest.raises(FileNotFoundError, match='config.json'):
    huggingface.load_hf_checkpoint(str(tmp_path / 'nowhere'))


def test_gpt2_bin_with_tied_lm_head_and_untied_models(tmp_path):
  torch.manual_seed(3)
  config = transformers.GPT2Config(vocab_size=60, n_embd=32, n_layer=2,
                                   n_head=4, n_positions=16, bos_token_id=0,
                                   eos_token_id=0)
  model = transformers.GPT2LMHeadModel(config).eval()
  state = dict(model.state_dict())  # includes lm_head.weight (tied)
  assert 'lm_head.weight' in state
  path = write_checkpoint(tmp_path / 'tied', config, state, 'GPT2LMHeadModel',
                          fmt='bin')
  cfg, params, name = huggingface.load_hf_checkpoint(path)
  assert name == 'decoder_lm' and cfg.tie_output_embedding
  assert cfg.activation == 'gelu_tanh' and cfg.norm_position == 'pre'

  untied = transformers.GPT2Config(vocab_size=60, n_embd=32, n_layer=1,
                                   n_head=4, n_positions=16,
                                   tie_word_embeddings=False, bos_token_id=0,
                                   eos_token_id=0)
  model = transformers.GPT2LMHeadModel(untied).eval()
  model.save_pretrained(str(tmp_path / 'untied'))
  cfg, params, name = huggingface.load_hf_checkpoint(str(tmp_path / 'untied'))
  assert not cfg.tie_output_embedding
  np.testing.assert_array_equal(params['output_projection']['kernel'],
                                model.lm_head.weight.detach().numpy().T)
  ids = np.arange(8)[None]
  with torch.no_grad():
    reference = model(torch.tensor(ids)).logits.numpy()
  ours = jax.jit(registry.build(name, cfg).apply)({'params': params}, ids)
  assert np.abs(ours - reference).max() <= 1e-4


def fresh_params(name, cfg):
  """Stands in for `model.init` (whose compilation costs seconds on CPU)."""
  rs = np.random.RandomState(0)
  return jax.tree.map(
      lambda s: jnp.asarray(rs.standard_normal(s.shape), s.dtype),
      registry.param_shapes(name, cfg))


def test_restore_pretrained_fills_the_encoder_and_keeps_new_heads(
    pretraining_dir):
  source = huggingface.load_hf_checkpoint(pretraining_dir)
  cfg = source.config.replace(num_labels=3)
  fresh = fresh_params('bert_classifier', cfg)
  restored = pretrained.restore_pretrained(fresh, pretraining_dir)
  got, want = _flatten(restored['bert']), _flatten(source.params['bert'])
  assert got.keys() == want.keys()
  for k in want:
    np.testing.assert_array_equal(got[k], want[k])
  np.testing.assert_array_equal(restored['classifier']['kernel'],
                                fresh['classifier']['kernel'])
  assert set(restored) == {'bert', 'classifier'}


def test_restore_from_an_encoder_only_checkpoint_into_a_scanned_model(
    tmp_path, bert_model):
  path = write_checkpoint(tmp_path / 'encoder', bert_model.config,
                          bert_model.state_dict(), 'BertModel')
  source = huggingface.load_hf_checkpoint(path)
  cfg = source.config.replace(scan_layers=True)
  restored = pretrained.restore_hf_checkpoint(
      fresh_params('bert_qa', cfg), path)
  stacked = restored['bert']['stack']['layers']['ffn']['wi']['kernel']
  np.testing.assert_array_equal(
      stacked[1], source.params['stack']['layers_1']['ffn']['wi']['kernel'])
  # And back: a scanned checkpoint into an unrolled encoder.
  scanned = huggingface.load_hf_checkpoint(path, scan_layers=True)
  unrolled = pretrained.merge_pretrained(
      fresh_params('bert', source.config), scanned.params)
  np.testing.assert_array_equal(
      unrolled['stack']['layers_1']['ffn']['wi']['kernel'],
      source.params['stack']['layers_1']['ffn']['wi']['kernel'])


def test_restore_shape_mismatch_names_the_path_and_both_shapes(
    pretraining_dir):
  source = huggingface.load_hf_checkpoint(pretraining_dir)
  cfg = source.config.replace(max_len=16)
  with pytest.raises(huggingface.CheckpointMismatchError,
                     match=r'bert/embed/positions/embedding has shape '
                           r'\(24, 32\) there but \(16, 32\) in the model'):
    pretrained.restore_hf_checkpoint(fresh_params('bert_mlm', cfg),
                                 pretraining_dir)


def test_restore_with_nothing_in_common_fails(pretraining_dir):
  with pytest.raises(huggingface.CheckpointMismatchError,
                     match='no parameter path in common'):
    pretrained.merge_pretrained({'dense': {'kernel': jnp.zeros((2, 2))}},
                               huggingface.load_hf_checkpoint(
                                   pretraining_dir).params)


# ------------------------------------------------------------- package --
def _imports(path: pathlib.Path) -> set[str]:
  """The modules a file imports (`from models.hf import t5` -> models.hf.t5)."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module:
      submodules = {f'{node.module}.{alias.name}' for alias in node.names}
      # `from models.hf import tensor_rules` imports the submodule only;
      # `from models import hf` the package itself (models.hf).
      names |= submodules if node.module == 'models.hf' else (
          submodules | {node.module})
  return names


def test_converters_import_only_the_shared_modules():
  """No converter imports another or the package (its registry), and the
  shared modules import no converter: the import graph has no cycle."""
  package = pathlib.Path(conftest.REPO) / 'models' / 'hf'
  shared = {'models.hf.tensor_rules', 'models.hf.files'}
  modules = {f'models.hf.{p.stem}': p for p in package.glob('*.py')
             if p.stem != '__init__'}
  assert {f'models.hf.{t}' for t in huggingface.CONVERTERS} == (
      modules.keys() - shared)
  for name, path in modules.items():
    inside = {m for m in _imports(path)
              if m == 'models.hf' or m.startswith('models.hf.')}
    allowed = set() if name in shared else shared
    assert inside <= allowed, f'{name} imports {sorted(inside - allowed)}'


def test_every_converter_answers_the_one_interface():
  for model_type, converter in huggingface.CONVERTERS.items():
    assert converter.MODEL_TYPE == model_type
    assert converter.ARCHITECTURES
    for function in ('model_config', 'import_params', 'exports', 'hf_config',
                     'export_tensors'):
      assert callable(getattr(converter, function)), (model_type, function)
