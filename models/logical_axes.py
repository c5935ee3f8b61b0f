"""Logical axis names of parameters and activations (as MaxText and t5x).

Every parameter names each of its dimensions when it is created
(`initializers.*`, `nn.with_logical_partitioning`), and the main activations
are constrained to named dimensions (`constrain`). `config.logical_axis_rules`
maps each name to a mesh axis or to None (training/sharding.py), so data,
fsdp and tensor parallelism are a config change. Without rules in force (the
pmap step, a plain `apply`) the constraints do nothing, and the variables
that `registry.init_params` and the tasks return are plain arrays.

  batch     examples of a batch (times beams when decoding)
  length    positions of a sequence (query or key)
  embed     d_model: the residual stream, embeddings, norms
  mlp       d_ff: the feed-forward hidden layer
  heads     query heads
  kv_heads  key/value heads (fewer in grouped-query attention)
  kv        the features of one head (head_dim)
  vocab     the token vocabulary
  layers    the stacked layers of `model.scan_layers`
"""
import functools

import flax.linen as nn

LOGICAL_AXES = ('batch', 'length', 'embed', 'mlp', 'heads', 'kv_heads', 'kv',
                'vocab', 'layers')


class Named(nn.LogicallyPartitioned):
  """nn.LogicallyPartitioned whose unboxing constrains nothing.

  flax's DenseGeneral unboxes a kernel at its flat [in, out] shape before
  reshaping it, where a constraint over the final names fails (rank 2, 3
  names) once rules and a mesh are in force. Parameters get their layout
  from the shardings the state is initialised into (training/parallel.py)
  instead of from constraints.
  """

  def unbox(self, apply_constraint=True):
    del apply_constraint
    return self.value

  # A boxed tree (what `model.init` returns) reads like arrays for shapes.
  shape = property(lambda self: self.value.shape)
  dtype = property(lambda self: self.value.dtype)
  ndim = property(lambda self: self.value.ndim)


def with_axes(init, *names):
  """An initialiser whose parameter carries one logical name (or None) per
  dimension: nn.with_logical_partitioning, boxed as `Named`."""
  @functools.wraps(init)
  def wrapper(*args, **kwargs):
    return Named(init(*args, **kwargs), names)
  return wrapper


def constrain(x, *names):
  """x, laid out as the rules in force map `names` (one per dimension)."""
  return nn.with_logical_constraint(x, names)
