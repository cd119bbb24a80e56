"""The device mesh: one 'data' axis over every device of every process."""

import os

import jax
import numpy as np
from jax.sharding import NamedSharding

from lib.errors import ConfigError

DATA_AXIS = 'data'


def initialize_distributed():
  """Connects the processes of a multi-host job (a TPU pod slice, several GPU hosts).

  On Cloud TPU and under SLURM or Open MPI jax finds its peers by itself; a
  single process (a laptop, one GPU machine) needs nothing.
  """
  several = any(os.environ.get(name, '1') not in ('', '1') for name in (
      'JAX_NUM_PROCESSES', 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE'))
  on_tpu_pod = bool(os.environ.get('TPU_WORKER_HOSTNAMES', '').count(','))
  if (several or on_tpu_pod) and not jax.distributed.is_initialized():
    jax.distributed.initialize()


def make_mesh(num_devices: int = 0) -> jax.sharding.Mesh:
  """A 1-D mesh over the first `num_devices` devices (0: all of them)."""
  devices = jax.devices()
  if num_devices:
    if num_devices > len(devices):
      raise ConfigError(
          f'num_devices={num_devices} but only {len(devices)} devices exist')
    devices = devices[:num_devices]
  return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, jax.P(DATA_AXIS))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, jax.P())


def shard_batch(batch, mesh):
  """Assembles global arrays, sharded along 'data', from each process's part."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      batch)


def host_copy(tree):
  """Numpy copies of (replicated) arrays: each process holds them whole."""
  return jax.tree.map(
      lambda x: np.array(x.addressable_data(0) if isinstance(x, jax.Array)
                         else x), tree)


def check_batch_size(batch_size: int, mesh) -> None:
  """ConfigError unless the global batch splits evenly over the mesh."""
  if batch_size % mesh.size:
    raise ConfigError(f'config.batch_size={batch_size} must be a multiple of '
                      f'the number of devices ({mesh.size})')
