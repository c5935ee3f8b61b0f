"""Tensor-name rules between a Hugging Face state dict and our parameters,
read in both directions, and what import and export of every architecture
share: fitting tensors to a model's parameters, the config round-trip check,
the activation names, the layer stacking of `model.scan_layers`.

A layout is a list of rules (hf regex, our path template, transform). The
regex matches a Hugging Face tensor name (its architecture prefix, such as
`bert.`, stripped); the template is one of our '/'-joined parameter paths,
formatted with the regex groups (renamed by `Layout.renames`, e.g. GPT-2's
'weight' -> our 'kernel'; {b} is the backbone prefix, 'bert/' in BERT task
models); a None template marks a tensor with nothing to import (buffers,
tied copies). torch Linear weights are [out, in] and flax kernels [in, out].

Export reads each rule backwards: our path -> the regex's name with the
groups put back (`_hf_name_format`), checked by matching the rule again, so
import and export cannot drift.
"""
import dataclasses
import re
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from errors import UserError
from models import registry
from models.config import ModelConfig

_LIST_LIMIT = 8


class CheckpointMismatchError(UserError):
  """The checkpoint's tensors do not fit the model's parameters."""


class ExportError(UserError):
  """The model has no Hugging Face layout."""


class HFCheckpoint(NamedTuple):
  config: ModelConfig
  params: Any        # nested dict of jnp arrays, as `model.init` makes
  model_name: str    # a models/registry.py name


def list_names(names) -> str:
  names = sorted(names)
  shown = ', '.join(names[:_LIST_LIMIT])
  more = len(names) - _LIST_LIMIT
  return f'({len(names)}) {shown}' + (f', ... and {more} more' if more > 0
                                      else '')


# ---------------------------------------------------------- activations --
# Hugging Face name -> ours; export writes the first name of each of ours.
ACTIVATIONS = {'gelu': 'gelu', 'gelu_new': 'gelu_tanh',
               'gelu_pytorch_tanh': 'gelu_tanh', 'gelu_fast': 'gelu_tanh',
               'relu': 'relu', 'silu': 'silu', 'swish': 'silu'}


def activation(name: str) -> str:
  if name not in ACTIVATIONS:
    raise UserError(f'activation {name!r} is not supported '
                    f'({", ".join(ACTIVATIONS)})')
  return ACTIVATIONS[name]


def hf_activation(ours: str) -> str:
  for hf, name in ACTIVATIONS.items():
    if name == ours:
      return hf
  raise ExportError(f'model.activation={ours!r} has no Hugging Face name')


# -------------------------------------------------------------- layouts --
@dataclasses.dataclass(frozen=True)
class Layout:
  """rules: (hf regex, our template or None, transform or None), first
  match wins; renames: regex group -> {Hugging Face value: ours} (export
  writes the first Hugging Face value of each of ours); b: the value of
  {b}; strip: the name prefix import removes (one architecture's)."""
  rules: tuple
  renames: dict = dataclasses.field(default_factory=dict)
  b: str = ''
  strip: str = ''

  def compiled(self):
    return [(re.compile(r), t, f) for r, t, f in self.rules]


def _to_heads(cfg, x):  # [..., h * hd] -> [..., h, hd]; h: query or kv heads
  return x.reshape(*x.shape[:-1], -1, cfg.head_dim)


def _from_heads(cfg, x):  # [h * hd, out] -> [h, hd, out]
  return x.reshape(cfg.num_heads, cfg.head_dim, x.shape[-1])


# Import: Hugging Face tensor -> ours.
_IMPORT = {
    'same': lambda cfg, t: t,
    'linear': lambda cfg, t: t.T,
    'untied_linear': lambda cfg, t: t.T,
    'linear_to_heads': lambda cfg, t: _to_heads(cfg, t.T),
    'linear_from_heads': lambda cfg, t: _from_heads(cfg, t.T),
    'to_heads': _to_heads,
    'from_heads': _from_heads,
}
# Export: ours -> Hugging Face tensor (head counts are in the shapes).
_EXPORT = {
    'same': lambda x: x,
    'linear': lambda x: x.T,
    'untied_linear': lambda x: x.T,
    'linear_to_heads': lambda x: x.reshape(x.shape[0], -1).T,  # [in,h,hd]
    'linear_from_heads': lambda x: x.reshape(-1, x.shape[-1]).T,  # [h,hd,o]
    'from_heads': lambda x: x.reshape(-1, x.shape[-1]),
    'to_heads': lambda x: x.reshape(*x.shape[:-2], -1),
    'split_qkv_to_heads': lambda x: x.reshape(*x.shape[:-2], -1),
}
_QKV = ('query', 'key', 'value')  # their order in GPT-2's c_attn


# --------------------------------------------------------------- import --
def _import_tensor(template, transform, groups, cfg, tensor):
  """One Hugging Face tensor -> [(our path, array)] (empty: nothing)."""
  if template is None:
    return []
  if transform == 'split_qkv_to_heads':  # GPT-2's c_attn packs q, k, v
    parts = np.split(tensor, 3, axis=-1)
    return [(template.format(proj=proj, **groups), _to_heads(cfg, part))
            for proj, part in zip(_QKV, parts)]
  if transform == 'untied_linear' and cfg.tie_output_embedding:
    return []  # lm_head: the word embeddings' copy when tied
  return [(template.format(**groups), _IMPORT[transform](cfg, tensor))]


def import_tensors(state: dict, layout: Layout, cfg: ModelConfig):
  """(arrays by our path, each one's Hugging Face name, unexpected names)."""
  rules = layout.compiled()
  converted, origin, unexpected = {}, {}, []
  for key, tensor in state.items():
    name = key[len(layout.strip):] if (
        layout.strip and key.startswith(layout.strip)) else key
    for pattern, template, transform in rules:
      m = pattern.fullmatch(name)
      if m:
        groups = {k: layout.renames.get(k, {}).get(v, v)
                  for k, v in m.groupdict().items()}
        for path, value in _import_tensor(template, transform,
                                          dict(groups, b=layout.b), cfg,
                                          np.asarray(tensor)):
          converted[path] = value
          origin[path] = key
        break
    else:
      unexpected.append(key)
  return converted, origin, unexpected


def fit_params(converted: dict, origin: dict, unexpected: list,
               cfg: ModelConfig, model_name: str, source: str) -> dict:
  """Arrays by our '/'-joined paths (`origin`: each one's Hugging Face
  tensor) -> the params of `registry.build(model_name, cfg)`, all of them
  at their shapes, or CheckpointMismatchError naming what does not fit."""
  layer_cfg = cfg.replace(scan_layers=False)
  expected = {'/'.join(k): v for k, v in traverse_util.flatten_dict(
      registry.param_shapes(model_name, layer_cfg)).items()}
  unexpected += [origin[p] for p in converted if p not in expected]
  missing = [p for p in expected if p not in converted]
  if unexpected or missing:
    lines = [f'{source} does not fit model {model_name!r}:']
    if unexpected:
      lines.append(f'  unexpected tensors {list_names(unexpected)}')
    if missing:
      lines.append(f'  missing parameters {list_names(missing)}')
    raise CheckpointMismatchError('\n'.join(lines))
  params = {}
  for path, shape in expected.items():
    value = converted[path]
    if value.shape != shape.shape:
      raise CheckpointMismatchError(
          f'{source}: parameter {path} expects shape {tuple(shape.shape)} but '
          f'tensor {origin[path]} gives {tuple(value.shape)}')
    params[tuple(path.split('/'))] = value.astype(shape.dtype)
  params = traverse_util.unflatten_dict(params)
  if cfg.scan_layers:
    params = stack_layers(params)
  return jax.tree.map(jnp.asarray, params)


def import_params(state: dict, layout: Layout, cfg: ModelConfig,
                  model_name: str, source: str) -> dict:
  """Hugging Face tensors -> our params for `registry.build(model_name,
  cfg)` (CheckpointMismatchError for tensors or parameters left over)."""
  converted, origin, unexpected = import_tensors(state, layout, cfg)
  return fit_params(converted, origin, unexpected, cfg, model_name, source)


# --------------------------------------------------------------- export --
def _our_path_regex(template: str, b: str):
  """'{b}stack/layers_{i}/ffn/{p}' -> a regex with named groups."""
  parts = re.split(r'\{(\w+)\}', template.replace('{b}', b))
  return re.compile(''.join(
      re.escape(part) if k % 2 == 0 else f'(?P<{part}>[^/]+)'
      for k, part in enumerate(parts)))


def _hf_name_format(pattern: str) -> str:
  r"""'h\.(?P<i>\d+)\.ln_1\.(?P<norm>weight|bias)' -> 'h.{i}.ln_1.{norm}'."""
  name = re.sub(r'\(\?P<(\w+)>[^()]*\)', r'{\1}', pattern).replace('\\.', '.')
  if re.search(r'[\\()|\[\]*+?]', name):
    raise AssertionError(f'import rule {pattern!r} has no single inverse')
  return name


def _inverse(layout: Layout):
  """(our path regex, HF name format, HF regex, transform, on the
  backbone), one per rule that fills a parameter; and the inverse renames."""
  rules = [(_our_path_regex(template, layout.b),
            _hf_name_format(pattern.pattern), pattern, transform,
            '{b}' in template)
           for pattern, template, transform in layout.compiled()
           if template is not None]
  renames = {group: {ours: hf for hf, ours in reversed(values.items())}
             for group, values in layout.renames.items()}
  return rules, renames


def _hf_name(rules, renames, path: str, model_name: str):
  """The first rule whose inverse turns our `path` into a name that the
  rule itself reads back: (name, groups, transform, on_backbone)."""
  for ours, name_format, pattern, transform, on_backbone in rules:
    match = ours.fullmatch(path)
    if not match:
      continue
    groups = {k: renames.get(k, {}).get(v, v)
              for k, v in match.groupdict().items()}
    if transform == 'split_qkv_to_heads' and groups['proj'] not in _QKV:
      continue  # GPT-2's c_attn holds query, key, value but not 'out'
    name = name_format.format(**groups)
    if pattern.fullmatch(name):  # e.g. {proj} in 'attention/out' is not
      return name, groups, transform, on_backbone
  raise ExportError(f'parameter {path} of {model_name!r} has no place in '
                    'the Hugging Face layout')


def flat_params(params) -> dict:
  """Our params (scanned or not) -> {'/'-joined path: float32 array}."""
  return {path: np.asarray(value, np.float32) for path, value in
          traverse_util.flatten_dict(unstack_layers(params), sep='/').items()}


def with_zero_biases(flat: dict, cfg: ModelConfig, model_name: str) -> dict:
  """`flat` params of a model without biases (model.use_bias=False) plus
  zero biases where the same model with biases has them: the same
  function, in a layout that has biases."""
  if cfg.use_bias:
    return flat
  shapes = traverse_util.flatten_dict(registry.param_shapes(
      model_name, cfg.replace(use_bias=True, scan_layers=False)), sep='/')
  return {**{path: np.zeros(s.shape, np.float32) for path, s in
             shapes.items() if path not in flat}, **flat}


def export_tensors(flat: dict, layout: Layout, model_name: str,
                   hf_prefix: Callable[[str, bool], str] = lambda n, b: ''
                   ) -> dict:
  """Our '/'-joined params -> {Hugging Face tensor name: array}.
  hf_prefix(name, on_backbone): the prefix of the name in the
  architecture ('bert.', 'transformer.', ...)."""
  rules, renames = _inverse(layout)
  state, qkv = {}, {}
  for path, value in flat.items():
    name, groups, transform, on_backbone = _hf_name(rules, renames, path,
                                                    model_name)
    tensor = _EXPORT[transform](value)
    name = hf_prefix(name, on_backbone) + name
    if transform == 'split_qkv_to_heads':  # GPT-2 packs q, k, v in one
      qkv.setdefault(name, {})[groups['proj']] = tensor
    else:
      state[name] = tensor
  for name, parts in qkv.items():
    state[name] = np.concatenate([parts[p] for p in _QKV], axis=-1)
  return {k: np.ascontiguousarray(v, np.float32) for k, v in state.items()}


# Fields that do not change what a trained model computes.
UNCHECKED = ('dropout_rate', 'attention_dropout_rate',
             'activation_dropout_rate', 'dropout_bits', 'dropout_prng',
             'cpu_fast_dots', 'dtype', 'param_dtype', 'attention_impl',
             'attention_block_size', 'remat_policy', 'scan_layers',
             'init_std', 'scale_residual_init', 'num_labels')


def check_round_trip(cfg: ModelConfig, read_back: Callable[[], ModelConfig],
                     arch: str, unchecked=UNCHECKED):
  """Import of the exported config.json (`read_back`) must give back every
  field of `cfg` that shapes the computation; ExportError names the first
  that differs. A model without biases is the layout's with zero biases."""
  try:
    back = read_back()
  except ValueError as e:
    raise ExportError(f'{arch}: {e}') from None
  for name in cfg.__dataclass_fields__:
    if name in unchecked:
      continue
    ours, theirs = getattr(cfg, name), getattr(back, name)
    if name == 'use_bias' and theirs and not ours:
      continue
    if ours != theirs:
      raise ExportError(
          f'model.{name}={ours!r} cannot be exported: the Hugging Face '
          f'{arch} layout has {name}={theirs!r}')


# ------------------------------------------------------- layer stacking --
def stack_layers(params):
  """{'layers_0': p0, 'layers_1': p1, ...} -> {'layers': stacked on axis 0}
  wherever it occurs: the layout of `LayerStack` with scan_layers=True."""
  if not isinstance(params, dict):
    return params
  layer_keys = [k for k in params if re.fullmatch(r'layers_\d+', k)]
  out = {k: stack_layers(v) for k, v in params.items() if k not in layer_keys}
  if layer_keys:
    layers = [params[f'layers_{i}'] for i in range(len(layer_keys))]
    out['layers'] = jax.tree.map(lambda *xs: np.stack(xs), *layers)
  return out


def unstack_layers(params):
  """The inverse of `stack_layers`."""
  if not isinstance(params, dict):
    return params
  out = {k: unstack_layers(v) for k, v in params.items() if k != 'layers'}
  if 'layers' in params:
    n = jax.tree.leaves(params['layers'])[0].shape[0]
    for i in range(n):
      out[f'layers_{i}'] = jax.tree.map(lambda x: x[i], params['layers'])
  return out
