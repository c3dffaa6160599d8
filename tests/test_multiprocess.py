"""2 processes × 2 CPU devices (jax.distributed over localhost, gloo) against 1 process × 4,
through `sat train` and the real input pipeline.

One launch of two processes (tests/multiprocess_worker.py) covers: evaluation on a mesh whose
devices alternate between processes pairs every output with its image; SIGTERM to ONE process
stops both at the same step with one collective checkpoint and exit status 75 (unagreed, the
signalled process entered the collective save while the other ran the next step: a hang);
the run resumed as 1 process × 4 devices ends with the parameters of an uninterrupted
1-process run (1e-5: the 2-process steps reduce in another order) because the global batches
do not depend on the process count. Batches hold image groups (5 captions of each of 4 images),
which each process and device keeps whole.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import TEST_XLA_FLAGS

from show_attend_tell.checkpoints import VERIFIED, Checkpoints
from show_attend_tell.config_loading import config_from_args
from show_attend_tell.train import EXIT_STOPPED, train_and_evaluate

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import multiprocess_worker  # noqa: E402

LONG = 200  # steps the 2-process run is given: the signal stops it long before
HANG_S = 150  # after the signal; an unagreed stop hangs past it


def overrides(data_dir, steps: int) -> list[str]:
    # Image groups (data.captions_per_image): 4 images x 5 captions a batch, one image per
    # device, whole groups per process.
    return [f"data.data_dir={data_dir}", "data.builder_config=tiny",
            "data.captions_per_image=5", "train.batch_size=20",
            "data.bucket_boundaries=(24,)",  # one caption width: one compilation
            f"train.steps={steps}", "train.checkpoint_every=1000", "train.eval_every=0",
            "train.log_every=1", "train.schedule=constant",  # steps may change on resume
            "train.optimizer=sgd", "train.learning_rate=0.01"]  # params follow every batch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def logged_step(workdir: Path) -> int:
    path = workdir / "metrics.jsonl"
    steps = re.findall(r'"step": (\d+)', path.read_text()) if path.exists() else []
    return int(steps[-1]) if steps else 0


def params_of(state) -> dict:
    return {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(state.params)}


def test_two_processes_stop_together_and_resume_as_one(tiny_shapes, tmp_path):
    workdir, port = tmp_path / "run", free_port()
    # No persistent compilation cache: the processes compile side by side (a cache hit in one
    # only could leave the other past gloo's 30 s wait at the first collective).
    env = {name: value for name, value in os.environ.items()
           if name != "JAX_COMPILATION_CACHE_DIR"}
    env.update({"PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
                "XLA_FLAGS": f"--xla_force_host_platform_device_count=2 {TEST_XLA_FLAGS}",
                "SAT_COORDINATOR": f"127.0.0.1:{port}", "SAT_NUM_PROCESSES": "2",
                "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo"})
    logs = [tmp_path / f"process{index}.log" for index in range(2)]
    children = []
    for index, log in enumerate(logs):
        with open(log, "w") as output:  # a file: a full pipe would block the child
            children.append(subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "multiprocess_worker.py"), str(tmp_path),
                 str(workdir), *overrides(tiny_shapes, LONG)],
                env={**env, "SAT_PROCESS_ID": str(index)}, cwd=ROOT, stdout=output,
                stderr=subprocess.STDOUT))

    def outputs() -> str:
        return "\n".join(f"--- process {i}\n{log.read_text()[-3000:]}" for i, log in enumerate(logs))

    try:
        deadline = time.monotonic() + 600
        while logged_step(workdir) < 2:
            assert all(child.poll() is None for child in children), outputs()
            assert time.monotonic() < deadline, outputs()
            time.sleep(0.05)
        children[1].send_signal(signal.SIGTERM)  # process 0 is never signalled
        codes = [child.wait(timeout=HANG_S) for child in children]
    except subprocess.TimeoutExpired:
        pytest.fail(f"the processes did not stop together (hang):\n{outputs()}")
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert codes == [EXIT_STOPPED, EXIT_STOPPED], outputs()
    stopped = [set(re.findall(r"stopped by signal at step (\d+)", log.read_text())) for log in logs]
    assert stopped[0] == stopped[1] and len(stopped[0]) == 1, outputs()
    step = int(stopped[0].pop())
    assert 2 < step < LONG, step
    # One checkpoint, written collectively by both processes, readable as a whole.
    checkpoints = Checkpoints(workdir, read_only=True)
    assert checkpoints.steps() == [step]
    assert checkpoints.restore_meta(step)["data_iterator"]["process_count"] == 2
    assert checkpoints.verify(step) == VERIFIED  # process 0 wrote the digest after the commit

    # Evaluation on the interleaved mesh: each image's attention is its own (this process's
    # 1 × 4 devices in order as the reference).
    config = config_from_args(multiprocess_worker.CONFIG, overrides(tiny_shapes, step + 2))
    from show_attend_tell import parallel

    expected = multiprocess_worker.decode_alphas(config, parallel.make_mesh())
    got = np.load(tmp_path / "eval.npz")
    assert sorted(got.files) == sorted(expected) and len(expected) == 12
    for image_id, alphas in expected.items():
        np.testing.assert_allclose(got[image_id], alphas, atol=1e-5, err_msg=image_id)

    # Resumed as 1 process × 4 devices: the 2-process data stream goes on.
    resumed = train_and_evaluate(config, workdir)
    straight = train_and_evaluate(config, tmp_path / "straight")
    assert int(resumed.step) == int(straight.step) == step + 2
    a, b = params_of(straight), params_of(resumed)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], atol=1e-5, err_msg=f"{name} (step {step})")
