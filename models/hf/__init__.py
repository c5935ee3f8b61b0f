"""Hugging Face checkpoints in and out: one converter module per
architecture, chosen by config.json's `model_type`.

    bert.py    BERT (BertModel, BertFor...)          <-> 'bert', 'bert_*'
    gpt2.py    GPT2Model, GPT2LMHeadModel            <-> 'decoder_lm'
    llama.py   LlamaForCausalLM                      <-> 'decoder_lm' (RMSNorm)
    t5.py      T5ForConditionalGeneration            <-> 'encoder_decoder' (T5)
    marian.py  MarianMTModel                         <-> 'encoder_decoder'

Each converter owns its config mapping (config.json <-> ModelConfig), its
tensor rules and name prefix, import and export side by side, on one
interface: `MODEL_TYPE`, `ARCHITECTURES`, `model_config(hf, state,
**overrides)`, `import_params(state, cfg, model_name, source)`,
`exports(cfg, model_name)`, `hf_config(cfg, model_name, **token_ids)`,
`export_tensors(params, cfg, model_name)`. What they share is in
`tensor_rules.py` (the rule engine, fitting, checks) and `files.py`
(reading and writing the directory); no converter imports another.

    cfg, params, model_name = load_hf_checkpoint('/ckpt/bert-base')
    export_hf_checkpoint(cfg, params, model_name, '/tmp/out')

Import is strict: a tensor that maps nowhere, or a parameter that no tensor
fills, raises `CheckpointMismatchError` listing both sets. Export checks the
config by importing it back: a field the layout cannot hold fails in one
line naming it (`ExportError`); fields that only matter in training or for
speed (dropout, dtypes, remat, scan, initialisation) are not checked.
Fine-tuning from a checkpoint: training/pretrained.py.
"""
import logging

from errors import UserError
from models.config import ModelConfig
from models.hf import bert, gpt2, llama, marian, t5
from models.hf.files import read_hf_config, read_state_dict, write_checkpoint
from models.hf.tensor_rules import (CheckpointMismatchError, ExportError,
                                    HFCheckpoint, list_names, stack_layers,
                                    unstack_layers)

CONVERTERS = {c.MODEL_TYPE: c for c in (bert, gpt2, llama, t5, marian)}

__all__ = ['CONVERTERS', 'CheckpointMismatchError', 'ExportError',
           'HFCheckpoint', 'architecture', 'converter_for_export',
           'export_hf_checkpoint', 'hf_config', 'hf_state_dict', 'list_names',
           'load_hf_checkpoint', 'model_config_from_hf', 'read_hf_config',
           'read_state_dict', 'stack_layers', 'unstack_layers']


def _converter(hf: dict):
  model_type = hf.get('model_type')
  if model_type not in CONVERTERS:
    raise UserError(f'model_type {model_type!r} is not supported '
                    f'({", ".join(CONVERTERS)})')
  return CONVERTERS[model_type]


def model_config_from_hf(hf: dict, state: dict | None = None,
                         **overrides) -> tuple[ModelConfig, str]:
  """config.json dict -> (ModelConfig, registry model name). overrides:
  ModelConfig fields to set on top (dtype, scan_layers, remat, dropout
  ...); they may not change shapes. `state`: the tensors, where the config
  alone does not say (T5's output layer)."""
  converter = _converter(hf)
  architecture_name = (hf.get('architectures') or [None])[0]
  if architecture_name not in converter.ARCHITECTURES:
    logging.warning('architecture %s is not supported; trying it as %r',
                    architecture_name, converter.model_config(hf, state)[1])
  return converter.model_config(hf, state, **overrides)


def load_hf_checkpoint(path: str, **overrides) -> HFCheckpoint:
  """A Hugging Face checkpoint directory -> (ModelConfig, params,
  model_name); overrides: ModelConfig fields to change (e.g.
  dtype='bfloat16', scan_layers=True), the shapes staying the
  checkpoint's."""
  hf = read_hf_config(path)
  converter = _converter(hf)
  state = read_state_dict(path)
  cfg, model_name = model_config_from_hf(hf, state, **overrides)
  architecture_name = (hf.get('architectures') or ['?'])[0]
  params = converter.import_params(state, cfg, model_name,
                                   f'{path} ({architecture_name})')
  return HFCheckpoint(cfg, params, model_name)


def converter_for_export(cfg: ModelConfig, model_name: str):
  for converter in CONVERTERS.values():
    if converter.exports(cfg, model_name):
      return converter
  exportable = sorted({name for c in CONVERTERS.values()
                       for name in c.ARCHITECTURES.values()})
  raise ExportError(f'model {model_name!r} has no Hugging Face layout '
                    f'(exportable: {", ".join(exportable)})')


def hf_config(cfg: ModelConfig, model_name: str, **token_ids) -> dict:
  """The config.json dict of `cfg`; `token_ids` (pad_token_id, ...) are
  written as given. Raises ExportError naming a field it cannot hold."""
  return converter_for_export(cfg, model_name).hf_config(cfg, model_name,
                                                         **token_ids)


def architecture(cfg: ModelConfig, model_name: str) -> str:
  """The transformers class an export of the model is (config checked)."""
  return hf_config(cfg, model_name)['architectures'][0]


def hf_state_dict(params, cfg: ModelConfig, model_name: str) -> dict:
  """Our parameters -> {Hugging Face tensor name: float32 array}."""
  return converter_for_export(cfg, model_name).export_tensors(params, cfg,
                                                              model_name)


def export_hf_checkpoint(cfg: ModelConfig, params, model_name: str,
                         path: str, **token_ids) -> list[str]:
  """Writes config.json and model.safetensors (float32) into `path`;
  returns the file names. `token_ids`: pad_token_id, bos_token_id,
  eos_token_id."""
  config = hf_config(cfg, model_name, **token_ids)
  return write_checkpoint(path, config, hf_state_dict(params, cfg,
                                                      model_name))
