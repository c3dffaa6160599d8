"""What a training run needs around its loop: the stop signal, the workdir's write probe and the
metric log (metrics.jsonl and TensorBoard)."""

import json
import os
import signal
import socket

import jax
import numpy as np
import tensorflow as tf

from show_attend_tell.errors import OutputNotWritable
from show_attend_tell.paths import Path


class StopSignal:
    """First SIGTERM/SIGINT: ask the loop to checkpoint and exit; second: exit at once
    (orbax renames a step into place only when complete, so nothing half-written remains).
    ``requested`` is this process's own; the loop acts on it once all processes agree
    (:func:`parallel.any_process`), so the one collective save starts at the same step
    everywhere even when only one process got the signal."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise SystemExit(128 + signum)
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def check_workdir_writable(workdir: Path) -> None:
    """Create ``workdir`` and write and remove a probe file in it. Each process of a job
    probes under its own name: on storage the processes share, one name would let a process
    remove another's probe between its write and its removal."""
    probe = workdir / f".write_test-{jax.process_index()}-{socket.gethostname()}-{os.getpid()}"
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise OutputNotWritable(f"workdir {workdir} is not writable: {error.strerror or error}") from error


class MetricLog:
    """metrics.jsonl and TensorBoard events, written by the main process only."""

    def __init__(self, workdir: Path):
        self.enabled = jax.process_index() == 0
        if self.enabled:
            self.jsonl = (workdir / "metrics.jsonl").open("a")
            self.writer = tf.summary.create_file_writer(str(workdir / "tensorboard"))

    def write(self, step: int, prefix: str, values: dict) -> None:
        if not self.enabled:
            return

        scalars = {f"{prefix}/{k}": float(v) for k, v in values.items()
                   if isinstance(v, (int, float, np.floating, np.integer))}
        self.jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self.jsonl.flush()
        with self.writer.as_default(step=step):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
        self.writer.flush()

    def close(self):
        if self.enabled:
            self.jsonl.close()
            self.writer.close()
