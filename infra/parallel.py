"""Data parallelism in two spellings with identical results.

'pmap': `jax.pmap` over local devices; parameters replicated with a leading
  device axis; gradients summed with `psum` over the 'data' axis.
'mesh': `jax.jit` over a `jax.sharding.Mesh` with one 'data' axis; the batch
  is sharded, parameters replicated, and XLA inserts the all-reduce. This is
  the form JAX recommends, and the one that admits fsdp/tensor axes later.

Both see the same global batch, split across all devices of all hosts; each
host feeds only its own rows.
"""
import numpy as np
import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


class DataParallel:
  """Places state and batches on devices and compiles steps for one mode."""

  def __init__(self, mode: str, num_devices: int = 0):
    """num_devices: 0 uses every device; n > 0 the first n (one host only)."""
    if mode not in ('pmap', 'mesh'):
      raise ValueError(f'config.parallelism={mode!r} is not one of pmap, mesh')
    self.mode = mode
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
    self.batch_sharding = NamedSharding(self.mesh, P(DATA_AXIS))
    # The axis name that steps reduce over; None when XLA does it (mesh).
    self.axis_name = DATA_AXIS if mode == 'pmap' else None
    # pmap's layout: a leading axis of local devices, one slice on each.
    self.local_stacked = NamedSharding(
        Mesh(np.asarray(self.local_devices), (DATA_AXIS,)), P(DATA_AXIS))

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  def host_batch_size(self, global_batch_size: int) -> int:
    """Rows this host feeds; fails early with one line if they don't split."""
    if global_batch_size % self.num_devices:
      raise ValueError(
          f'config.batch_size={global_batch_size} is not divisible by the '
          f'{self.num_devices} devices')
    return global_batch_size // jax.process_count()

  def host_slice(self, global_rows: int) -> slice:
    """This host's rows of a batch generated identically on every host."""
    per_host = global_rows // jax.process_count()
    start = jax.process_index() * per_host
    return slice(start, start + per_host)

  # State -------------------------------------------------------------------
  def replicate(self, tree):
    """Host pytree (or globally replicated arrays) -> state for the steps."""
    if self.mode == 'pmap':
      devices = self.local_devices
      def put(x):
        stacked = np.broadcast_to(host_copy(x), (len(devices),) + np.shape(x))
        return jax.device_put(stacked, self.local_stacked)
      return jax.tree.map(put, tree)
    return jax.device_put(tree, self.replicated)

  def unreplicate(self, tree):
    """Step state -> one copy per leaf (global replicated arrays for mesh)."""
    if self.mode == 'pmap':
      return jax.tree.map(lambda x: x[0], tree)
    return tree

  def global_replicated(self, tree):
    """Step state -> globally replicated arrays, the form checkpoints store
    (copies to the host in pmap mode: call only when saving)."""
    if self.mode == 'mesh':
      return tree
    def to_global(x):
      value = np.asarray(x[0])
      return jax.make_array_from_callback(value.shape, self.replicated,
                                          lambda index: value[index])
    return jax.tree.map(to_global, tree)

  # Batches -----------------------------------------------------------------
  def shard(self, host_batch):
    """Host-local numpy rows -> device batch for a compiled step."""
    if self.mode == 'pmap':
      n = len(self.local_devices)
      return jax.tree.map(lambda x: x.reshape((n, -1) + x.shape[1:]),
                          host_batch)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            self.batch_sharding, x), host_batch)

  def to_host(self, device_out):
    """Per-example outputs of a compiled step -> this host's numpy rows."""
    if self.mode == 'pmap':
      return jax.tree.map(
          lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]), device_out)
    if jax.process_count() == 1:
      return jax.tree.map(np.asarray, device_out)
    return multihost_utils.global_array_to_host_local_array(
        device_out, self.mesh, P(DATA_AXIS))

  def reduced(self, device_out):
    """Scalars already summed over all devices -> numpy (first copy)."""
    if self.mode == 'pmap':
      return jax.tree.map(lambda x: np.asarray(x[0]), device_out)
    return jax.tree.map(lambda x: np.asarray(host_copy(x)), device_out)

  # Compilation -------------------------------------------------------------
  def compile(self, fn, *, num_sharded: int, donate_state: bool = False):
    """Compiles fn(state, *sharded_args, *broadcast_args).

    The first argument is the replicated state, the next `num_sharded` are
    batches split over devices; any further ones are broadcast (e.g. rng).
    """
    donate = (0,) if donate_state else ()
    if self.mode == 'pmap':
      def in_axes(nargs):
        return (0,) * (1 + num_sharded) + (None,) * (nargs - 1 - num_sharded)
      compiled = {}
      def call(*args):
        if len(args) not in compiled:
          compiled[len(args)] = jax.pmap(
              fn, axis_name=DATA_AXIS, in_axes=in_axes(len(args)),
              # All devices of all hosts: psum then spans every host.
              donate_argnums=donate, devices=self.devices)
        return compiled[len(args)](*args)
      return call
    return jax.jit(fn, donate_argnums=donate)


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
