"""Data parallelism in two spellings with identical results, chosen once.

`PmapParallel`: `jax.pmap` over the devices; state replicated with a leading
  device axis; gradients summed with `psum` over the 'data' axis.
`MeshParallel`: `jax.jit` over a `jax.sharding.Mesh` with one 'data' axis;
  the batch is sharded, the state replicated, and XLA inserts the
  all-reduce. This is the form JAX recommends.

Both see the same global batch, split across all devices of all hosts; each
host feeds only its own rows (input_data/pipelines.host_rows). train.py
calls `make_parallel` once and never asks which one it got.
"""
import abc
import json

import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

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
        raise ValueError(f'config.num_devices={num_devices} must be in [1, '
                         f'{len(self.devices)}] on a single host')
      self.devices = self.devices[:num_devices]
    self.local_devices = [d for d in self.devices
                          if d.process_index == jax.process_index()]
    self.mesh = Mesh(np.asarray(self.devices), (DATA_AXIS,))
    self.replicated = NamedSharding(self.mesh, P())

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  def check_batch_size(self, global_batch_size: int, name: str):
    """Fails early with one line if a batch does not split over devices."""
    if global_batch_size < 1:
      raise ValueError(f'config.{name}={global_batch_size} must be >= 1')
    if global_batch_size % self.num_devices:
      raise ValueError(
          f'config.{name}={global_batch_size} is not divisible by the '
          f'{self.num_devices} devices')

  @abc.abstractmethod
  def replicate(self, tree):
    """Host pytree (or globally replicated arrays) -> state for the steps."""

  @abc.abstractmethod
  def global_replicated(self, tree):
    """Step state -> globally replicated arrays, the form checkpoints store."""

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
  def compile(self, fn, *, num_sharded: int, donate_state: bool = False):
    """Compiles fn(state, *sharded_args, *broadcast_args).

    The first argument is the replicated state, the next `num_sharded` are
    batches split over devices; any further ones are broadcast (e.g. rng).
    """


class PmapParallel(Parallel):
  """`jax.pmap` over every device of every host (psum spans all hosts)."""
  axis_name = DATA_AXIS

  def __init__(self, num_devices: int = 0):
    super().__init__(num_devices)
    # pmap's layout: a leading axis of local devices, one slice on each.
    self.local_stacked = NamedSharding(
        Mesh(np.asarray(self.local_devices), (DATA_AXIS,)), P(DATA_AXIS))

  def replicate(self, tree):
    n = len(self.local_devices)
    def put(x):
      stacked = np.broadcast_to(host_copy(x), (n,) + np.shape(x))
      return jax.device_put(stacked, self.local_stacked)
    return jax.tree.map(put, tree)

  def global_replicated(self, tree):
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

  def compile(self, fn, *, num_sharded: int, donate_state: bool = False):
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
  """`jax.jit` over a Mesh: batch sharded over 'data', state replicated."""

  def __init__(self, num_devices: int = 0):
    super().__init__(num_devices)
    self.batch_sharding = NamedSharding(self.mesh, P(DATA_AXIS))

  def replicate(self, tree):
    return jax.device_put(tree, self.replicated)

  def global_replicated(self, tree):
    return tree

  def shard(self, host_batch):
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            self.batch_sharding, x), host_batch)

  def to_host(self, device_out):
    if jax.process_count() == 1:
      return jax.tree.map(np.asarray, device_out)
    return multihost_utils.global_array_to_host_local_array(
        device_out, self.mesh, P(DATA_AXIS))

  def reduced(self, device_out):
    return jax.tree.map(lambda x: np.asarray(host_copy(x)), device_out)

  def compile(self, fn, *, num_sharded: int, donate_state: bool = False):
    del num_sharded  # shardings travel with the arrays
    return jax.jit(fn, donate_argnums=(0,) if donate_state else ())


_KINDS = {'pmap': PmapParallel, 'mesh': MeshParallel}


def make_parallel(mode: str, num_devices: int = 0) -> Parallel:
  """The implementation `config.parallelism` names."""
  if mode not in _KINDS:
    raise ValueError(f'config.parallelism={mode!r} is not one of '
                     f'{", ".join(_KINDS)}')
  return _KINDS[mode](num_devices)


# Hosts ---------------------------------------------------------------------
def host_copy(x):
  """Numpy copy of a (possibly multi-host, replicated) array."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(x.addressable_data(0))
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
