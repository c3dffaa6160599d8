"""2 processes × 2 CPU devices (jax.distributed over localhost, gloo) == 1 process × 4."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from show_attend_tell.checkpoints import VERIFIED, Checkpoints

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
STEPS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(out_dir: Path, processes: int, devices: int) -> None:
    port = free_port()
    env_base = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
                "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    children = []
    for index in range(processes):
        env = dict(env_base)
        if processes > 1:
            env.update(SAT_COORDINATOR=f"127.0.0.1:{port}", SAT_NUM_PROCESSES=str(processes),
                       SAT_PROCESS_ID=str(index), JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo")
        children.append(subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "multiprocess_worker.py"), str(out_dir),
             str(STEPS)], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    for child in children:
        output, _ = child.communicate(timeout=600)
        assert child.returncode == 0, output[-3000:]


def test_two_processes_equal_one_process(tmp_path):
    launch(tmp_path / "one", processes=1, devices=4)
    launch(tmp_path / "two", processes=2, devices=2)
    one = np.load(tmp_path / "one" / "params.npz")
    two = np.load(tmp_path / "two" / "params.npz")
    assert sorted(one.files) == sorted(two.files)
    for name in one.files:
        np.testing.assert_allclose(one[name], two[name], atol=1e-5, err_msg=name)
    # One checkpoint written collectively by both processes, readable as a whole.
    checkpoints = Checkpoints(tmp_path / "two", read_only=True)
    assert checkpoints.steps() == [STEPS]
    assert checkpoints.restore_meta(STEPS)["process_count"] == 2
    assert checkpoints.verify(STEPS) == VERIFIED  # process 0 wrote the digest after the commit
