"""Devices, mesh and global batches.

One mesh axis, ``'data'``: batches are sharded along it and parameters are replicated (a
``'model'`` axis can be added to :func:`make_mesh` without touching callers, which only use
:func:`batch_sharding` and :func:`replicated`).
"""

import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from show_attend_tell.errors import InvalidInput

DATA_AXIS = "data"


def maybe_initialize_distributed() -> None:
    """Start ``jax.distributed`` when launched as one of several processes.

    Multi-process launches set ``SAT_COORDINATOR`` (host:port), ``SAT_NUM_PROCESSES`` and
    ``SAT_PROCESS_ID`` (see launch/); on Cloud TPU and SLURM ``jax.distributed.initialize()``
    finds them itself, which ``SAT_DISTRIBUTED=auto`` asks for. Must run before any device use;
    a second call (``sat`` run twice in one process) does nothing.
    """
    if jax.distributed.is_initialized():
        return
    if os.environ.get("SAT_DISTRIBUTED") == "auto":
        jax.distributed.initialize()
    elif "SAT_COORDINATOR" in os.environ:
        jax.distributed.initialize(
            coordinator_address=os.environ["SAT_COORDINATOR"],
            num_processes=int(os.environ["SAT_NUM_PROCESSES"]),
            process_id=int(os.environ["SAT_PROCESS_ID"]),
        )


def make_mesh(devices=None) -> Mesh:
    """A 1-D ``('data',)`` mesh over all (or the given) devices."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over 'data', the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def global_batch(mesh: Mesh, local_batch: dict) -> dict:
    """Process-local numpy arrays ``[B_local, ...]`` -> global ``jax.Array``s ``[B, ...]``.

    Every process passes its own disjoint slice; the global batch is their concatenation in
    process order. Non-array entries (strings, Python objects) stay on the host and are dropped.
    """
    sharding = batch_sharding(mesh)
    return {
        name: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for name, value in local_batch.items()
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf"
    }


def check_batch_divisible(batch_size: int, mesh: Mesh, what: str) -> None:
    """Batch sizes must split evenly over devices and processes."""
    devices = mesh.devices.size
    if batch_size % devices:
        raise InvalidInput(
            f"{what}={batch_size} must be a multiple of the number of devices ({devices})"
        )


def any_process(flag: bool) -> bool:
    """Whether ``flag`` holds on any process, answered identically on every process: a
    decision taken on it (stop, save) happens at the same step everywhere. Each process must
    call it at the same point (it is a collective when there are several)."""
    if jax.process_count() == 1:
        return bool(flag)

    return bool(np.max(multihost_utils.process_allgather(np.int32(bool(flag)))))

