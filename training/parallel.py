"""Data, fsdp and tensor parallelism, chosen once.

`PmapParallel`: `jax.pmap` over the devices; state replicated with a leading
  device axis; gradients summed with `psum` over the 'data' axis. Pure data
  parallelism, the step as it always was.
`MeshParallel`: `jax.jit` over a `jax.sharding.Mesh` of `config.mesh`
  (axes 'data', 'fsdp', 'tensor'; training/sharding.py). Parameters,
  optimizer state, batches and the main activations are split as
  `config.logical_axis_rules` map their logical axis names; XLA inserts the
  collectives. With the default mesh (data only) the state is replicated
  and the batch split: data parallelism in the form JAX recommends.

Both see the same global batch, split across all devices of all hosts; each
host feeds only its own rows (input_data/batching.host_rows). train.py
calls `make_parallel` once and never asks which one it got. A state has two
forms: the step's (`place_state`) and the checkpoint's (`global_state`:
global arrays, replicated or sharded); on a mesh they are the same.
"""
import abc
import contextlib
import json

import flax.linen as nn
import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from configs import base_config
from errors import UserError
from training import sharding

DATA_AXIS = 'data'


class Parallel(abc.ABC):
  """Places state and batches on devices and compiles steps."""
  # The axis name that steps reduce over; None when XLA does it (mesh).
  axis_name: str | None = None

  def __init__(self, num_devices: int = 0):
    """num_devices: 0 uses every device; n > 0 the first n (one host only)."""
    self.devices = jax.devices()
    if num_devices:
      if jax.process_count() > 1 or not 0 < num_devices <= len(self.devices):
        raise UserError(f'config.num_devices={num_devices} must be in [1, '
                        f'{len(self.devices)}] on a single host')
      self.devices = self.devices[:num_devices]
    self.local_devices = [d for d in self.devices
                          if d.process_index == jax.process_index()]
    self.mesh = Mesh(np.asarray(self.devices), (DATA_AXIS,))
    self.replicated = NamedSharding(self.mesh, P())

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  @property
  def batch_shards(self) -> int:
    """Into how many parts a batch is split (devices that share a part
    compute on the same rows)."""
    return self.num_devices

  def check_batch_size(self, global_batch_size: int, name: str):
    """Fails early with one line if a batch does not split over devices."""
    if global_batch_size < 1:
      raise UserError(f'config.{name}={global_batch_size} must be >= 1')
    if global_batch_size % self.batch_shards:
      parts = (f'{self.num_devices} devices'
               if self.batch_shards == self.num_devices else
               f'{self.batch_shards} batch shards of config.mesh')
      raise UserError(
          f'config.{name}={global_batch_size} is not divisible by the '
          f'{parts}')

  def init(self, fn, *args):
    """fn(*args) compiled, its outputs in the checkpoint's form (for a
    state's initialisation: fresh parameters, the optimizer state)."""
    return jax.jit(fn)(*args)

  def abstract_state(self, tree):
    """ShapeDtypeStructs with the shardings that `global_state(tree)` has:
    the targets a checkpoint is restored into."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype,
                                       sharding=self.replicated), tree)

  @abc.abstractmethod
  def place_state(self, tree):
    """Host pytree or checkpoint-form state -> state for the steps."""

  @abc.abstractmethod
  def global_state(self, tree):
    """Step state -> global arrays, the form checkpoints store."""

  @abc.abstractmethod
  def shard(self, host_batch):
    """Host-local numpy rows -> device batch for a compiled step."""

  @abc.abstractmethod
  def to_host(self, device_out):
    """Per-example outputs of a compiled step -> this host's numpy rows."""

  @abc.abstractmethod
  def reduced(self, device_out):
    """Scalars already summed over all devices -> numpy (one copy)."""

  @abc.abstractmethod
  def compile(self, fn, *, num_sharded: int, donate_state: bool = False,
              returns_state: bool = False):
    """Compiles fn(state, *sharded_args, *broadcast_args).

    The first argument is the state, the next `num_sharded` are batches
    split over devices; any further ones are broadcast (e.g. rng).
    returns_state: fn returns (new state, scalars); the new state keeps the
    layout of the state.
    """


class PmapParallel(Parallel):
  """`jax.pmap` over every device of every host (psum spans all hosts)."""
  axis_name = DATA_AXIS

  def __init__(self, num_devices: int = 0):
    super().__init__(num_devices)
    # pmap's layout: a leading axis of local devices, one slice on each.
    self.local_stacked = NamedSharding(
        Mesh(np.asarray(self.local_devices), (DATA_AXIS,)), P(DATA_AXIS))

  def place_state(self, tree):
    n = len(self.local_devices)
    def put(x):
      stacked = np.broadcast_to(host_copy(x), (n,) + np.shape(x))
      return jax.device_put(stacked, self.local_stacked)
    return jax.tree.map(put, tree)

  def global_state(self, tree):
    # Copies to the host: call only when saving.
    def to_global(x):
      value = np.asarray(x[0])
      return jax.make_array_from_callback(value.shape, self.replicated,
                                          lambda index: value[index])
    return jax.tree.map(to_global, tree)

  def shard(self, host_batch):
    n = len(self.local_devices)
    return jax.tree.map(lambda x: x.reshape((n, -1) + x.shape[1:]),
                        host_batch)

  def to_host(self, device_out):
    return jax.tree.map(
        lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]), device_out)

  def reduced(self, device_out):
    return jax.tree.map(lambda x: np.asarray(x[0]), device_out)

  def compile(self, fn, *, num_sharded: int, donate_state: bool = False,
              returns_state: bool = False):
    del returns_state  # pmap keeps every output's layout
    compiled = {}  # one pmap per argument count (in_axes depend on it)
    def call(*args):
      if len(args) not in compiled:
        in_axes = (0,) * (1 + num_sharded) + (None,) * (
            len(args) - 1 - num_sharded)
        compiled[len(args)] = jax.pmap(
            fn, axis_name=DATA_AXIS, in_axes=in_axes,
            donate_argnums=(0,) if donate_state else (),
            devices=self.devices)
      return compiled[len(args)](*args)
    return call


class MeshParallel(Parallel):
  """`jax.jit` over a Mesh of `mesh_shape`: batch, state and activations
  split as `rules` map their logical axes (`param_axes`: the parameters'
  logical names, Task.param_axes; None replicates the state)."""

  def __init__(self, num_devices: int = 0, mesh_shape: dict | None = None,
               rules=(), param_axes=None):
    super().__init__(num_devices)
    self.mesh = sharding.make_mesh(
        dict(mesh_shape or {DATA_AXIS: len(self.devices)}), self.devices)
    self.rules = sharding.axis_rules(rules) or (('batch', DATA_AXIS),)
    self.param_axes = param_axes
    self.replicated = NamedSharding(self.mesh, P())
    self.batch_spec = sharding.batch_spec(self.rules)
    self.batch_sharding = NamedSharding(self.mesh, self.batch_spec)

  @property
  def batch_shards(self) -> int:
    axes = [a for entry in self.batch_spec if entry is not None
            for a in (entry if isinstance(entry, tuple) else (entry,))]
    return int(np.prod([self.mesh.shape[a] for a in axes]))

  def state_shardings(self, tree):
    """NamedShardings of a state pytree (arrays or ShapeDtypeStructs)."""
    return sharding.shardings_of(tree, self.param_axes, self.mesh, self.rules)

  @contextlib.contextmanager
  def context(self):
    """The mesh and the rules, in force while steps are traced: the models'
    logical constraints (models/logical_axes.py) act only inside it."""
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      yield

  def init(self, fn, *args):
    # Each device computes only its own shards: the whole state never has
    # to fit on one device.
    shardings = self.state_shardings(jax.eval_shape(fn, *args))
    with self.context():
      return jax.jit(fn, out_shardings=shardings)(*args)

  def abstract_state(self, tree):
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s),
        tree, self.state_shardings(tree))

  def place_state(self, tree):
    return jax.device_put(tree, self.state_shardings(tree))

  def global_state(self, tree):
    return tree

  def shard(self, host_batch):
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            self.batch_sharding, x), host_batch)

  def to_host(self, device_out):
    if jax.process_count() == 1:
      return jax.tree.map(np.asarray, device_out)
    return multihost_utils.global_array_to_host_local_array(
        device_out, self.mesh, self.batch_spec)

  def reduced(self, device_out):
    return jax.tree.map(lambda x: np.asarray(host_copy(x)), device_out)

  def compile(self, fn, *, num_sharded: int, donate_state: bool = False,
              returns_state: bool = False):
    del num_sharded  # batch shardings travel with the arrays
    return MeshStep(self, fn, donate_state, returns_state)


class MeshStep:
  """A step jitted over the mesh, traced with the mesh and rules in force.

  Compiled at the first call, when the state's layout is known: a step that
  returns a state gives it the layout of the state it got.
  """

  def __init__(self, dp: MeshParallel, fn, donate_state: bool,
               returns_state: bool):
    self.dp, self.fn = dp, fn
    self.donate_state, self.returns_state = donate_state, returns_state
    self.jitted = None

  def _compiled(self, state):
    if self.jitted is None:
      kwargs = {}
      if self.returns_state:
        kwargs['out_shardings'] = (self.dp.state_shardings(state),
                                   self.dp.replicated)
      self.jitted = jax.jit(
          self.fn, donate_argnums=(0,) if self.donate_state else (), **kwargs)
    return self.jitted

  def __call__(self, state, *args):
    with self.dp.context():
      return self._compiled(state)(state, *args)

  def lower(self, state, *args):
    with self.dp.context():
      return self._compiled(state).lower(state, *args)


_KINDS = {'pmap': PmapParallel, 'mesh': MeshParallel}


def make_parallel(mode: str, num_devices: int = 0, *,
                  mesh_shape: dict | None = None, rules=(),
                  param_axes=None) -> Parallel:
  """The implementation `config.parallelism` names; the mesh ones take the
  resolved `config.mesh` sizes, `config.logical_axis_rules` and the
  parameters' logical axes (Task.param_axes)."""
  if mode not in _KINDS:
    raise UserError(f'config.parallelism={mode!r} is not one of '
                    f'{", ".join(_KINDS)}')
  if mode == 'pmap':
    return PmapParallel(num_devices)
  return MeshParallel(num_devices, mesh_shape, rules, param_axes)


def for_config(config, task, mode: str | None = None) -> Parallel:
  """The devices of `config.parallelism` (or `mode`): pmap, or a mesh of
  config.mesh laid out by config.logical_axis_rules and the task's
  parameter axes."""
  num_devices = config.num_devices or jax.device_count()
  return make_parallel(
      mode or config.parallelism, config.num_devices,
      mesh_shape=base_config.mesh_shape(config.mesh, num_devices),
      rules=config.logical_axis_rules, param_axes=task.param_axes())


# Hosts ---------------------------------------------------------------------
def host_copy(x):
  """Numpy copy of a (possibly multi-host, replicated or sharded) array;
  collective for an array sharded over hosts."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    if x.sharding.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def sum_over_hosts(values):
  """Sums a pytree of numpy values over all processes (identity on one)."""
  if jax.process_count() == 1:
    return values
  gathered = multihost_utils.process_allgather(values)
  return jax.tree.map(lambda x: np.asarray(x).sum(0), gathered)


def allgather_objects(items: list) -> list:
  """Concatenates JSON-serialisable lists from all processes, in process
  order (identity on one). For predictions of unequal length per host."""
  if jax.process_count() == 1:
    return list(items)
  data = np.frombuffer(json.dumps(items).encode('utf-8'), np.uint8)
  # Arrays must have one shape on every host: gather lengths, then pad.
  lengths = np.asarray(multihost_utils.process_allgather(
      np.asarray([len(data)], np.int64))).reshape(-1)
  padded = np.zeros((int(lengths.max()),), np.uint8)
  padded[:len(data)] = data
  everything = np.asarray(multihost_utils.process_allgather(padded))
  out = []
  for row, n in zip(everything, lengths):
    out.extend(json.loads(row[:n].tobytes().decode('utf-8')))
  return out
