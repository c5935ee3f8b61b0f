"""The device mesh and the logical axis rules: where each array lives.

Parameters and activations name their dimensions logically ('embed', 'mlp',
'batch', ...; models/logical_axes.py). `config.logical_axis_rules` maps each
name to mesh axes of `config.mesh` ('data', 'fsdp', 'tensor'), as MaxText
and t5x do: with the defaults, data parallelism splits the batch, fsdp
splits the batch and every weight's 'embed' dimension (ZeRO-3), and tensor
parallelism splits 'mlp', 'heads' and 'vocab' (Megatron). Rules are tried
in order; a mesh axis serves at most one dimension of an array.

The optimizer state and the train state are laid out like the parameters
they mirror, matched by parameter path (`logical_axes_of`), so any optax
chain works without knowing its state.
"""
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import flax.linen as nn
import numpy as np

from errors import UserError


def make_mesh(shape: dict, devices) -> Mesh:
  """A Mesh of `devices` with axes `shape` = {name: size} (sizes resolved),
  in that order: the first axis varies slowest, so a host's devices hold
  neighbouring rows of the first (data) axis."""
  sizes = tuple(shape.values())
  if int(np.prod(sizes)) != len(devices):
    raise UserError(f'config.mesh={dict(shape)} needs {np.prod(sizes)} '
                    f'devices, not {len(devices)}')
  return Mesh(np.asarray(devices).reshape(sizes), tuple(shape))


def axis_rules(rules) -> tuple:
  """config.logical_axis_rules (lists once read back from JSON) as flax's
  rules: ((logical name, mesh axis | (mesh axes) | None), ...)."""
  def target(axes):
    return tuple(axes) if isinstance(axes, (list, tuple)) else axes
  return tuple((name, target(axes)) for name, axes in rules)


def mesh_spec(logical: P, shape, mesh: Mesh, rules) -> P:
  """The mesh PartitionSpec of an array of `shape` named `logical`.

  A mesh axis that does not divide its dimension is dropped (that dimension
  is then split over fewer devices or replicated), since arrays are split
  evenly: e.g. 2 key/value heads on tensor=4, or a vocabulary of 50257.
  """
  spec = nn.logical_to_mesh_axes(tuple(logical), rules)
  out = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * len(shape)):
    kept, size = [], 1
    for axis in (axes if isinstance(axes, tuple) else (axes,)):
      if axis is not None and dim % (size * mesh.shape[axis]) == 0:
        kept.append(axis)
        size *= mesh.shape[axis]
    out.append(None if not kept else kept[0] if len(kept) == 1
               else tuple(kept))
  return P(*out)


def _names(path) -> tuple:
  return tuple(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))))
               for k in path)


def logical_axes_of(tree, param_axes):
  """Logical PartitionSpecs for every leaf of `tree` (a train state, an
  optimizer state, parameters): a leaf whose path ends with a parameter's
  path and has its rank gets that parameter's names; anything else (step
  counters, scalars) is replicated, P()."""
  by_path = {}
  if param_axes is not None:
    flat, _ = jax.tree_util.tree_flatten_with_path(
        param_axes, is_leaf=lambda x: isinstance(x, P))
    by_path = {_names(path): spec for path, spec in flat}
  longest = max(map(len, by_path), default=0)

  def spec_of(path, leaf):
    names = _names(path)
    for start in range(max(len(names) - longest, 0), len(names)):
      spec = by_path.get(names[start:])
      if spec is not None and len(spec) == np.ndim(leaf):
        return spec
    return P()
  return jax.tree_util.tree_map_with_path(spec_of, tree)


def shardings_of(tree, param_axes, mesh: Mesh, rules):
  """NamedShardings for every leaf of `tree` (arrays or ShapeDtypeStructs)
  under `mesh` and `rules`."""
  logical = logical_axes_of(tree, param_axes)
  return jax.tree.map(
      lambda leaf, spec: NamedSharding(
          mesh, mesh_spec(spec, np.shape(leaf), mesh, rules)),
      tree, logical, is_leaf=lambda x: isinstance(x, P))


def batch_spec(rules) -> P:
  """How batches are split: the mesh axes of the logical 'batch' axis."""
  return nn.logical_to_mesh_axes(('batch',), rules)
