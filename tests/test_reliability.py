"""Preemption and faults: `sat train` killed at random moments resumes to the same bits.

One chain of `sat train` runs on the smoke config trains 12 steps with a checkpoint
after every step. Seeded random points interrupt it: three SIGKILLs (one timed to land inside
a checkpoint save) and one SIGTERM; each following run resumes from the last complete
checkpoint, and the final parameters must equal an uninterrupted run's bit for bit. Two
`sat train` launched on one workdir: the second refuses, the first ends as a lone run would.
"""

import errno
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from show_attend_tell.checkpoints import TRASH, Checkpoints
from show_attend_tell.cli import main
from show_attend_tell.config_loading import config_from_args
from show_attend_tell.run_utils import StopSignal, check_workdir_writable
from show_attend_tell.train import EXIT_STOPPED, train_and_evaluate
from show_attend_tell.workdir_lock import LOCK_FILE, WorkdirBusy, WorkdirLock

REPO = Path(__file__).resolve().parent.parent
STEPS = 12
# Each interruption lands up to this long after its step is saved; with the targets below (at
# most one step past the last checkpoint) even a fast machine stops well before STEPS.
MAX_DELAY_S = 0.2
TMP_SUFFIX = ".orbax-checkpoint-tmp"


def overrides(data_dir) -> list[str]:
    return [f"data.data_dir={data_dir}", "data.builder_config=tiny",
            "data.bucket_boundaries=(24,)",  # one caption width: one compilation
            "train.eval_every=0", f"train.steps={STEPS}", "train.checkpoint_every=1"]


class TrainingProcess:
    """`sat train` in a subprocess sharing the tests' persistent XLA cache, so its compiles
    are disk reads; output goes to a file (a full pipe would block it)."""

    def __init__(self, data_dir, workdir: Path, log: Path, extra: tuple[str, ...] = ()):
        env = {**os.environ,
               "JAX_COMPILATION_CACHE_DIR": str(REPO / ".jax_cache"),
               "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.2",
               "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
        command = [sys.executable, "-m", "show_attend_tell", "train", "--config",
                   "configs/shapes.py:smoke", "--workdir", str(workdir)]
        command += [f"--config.{item}" for item in [*overrides(data_dir), *extra]]
        self.log = log
        with open(log, "w") as output:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output,
                                            stderr=subprocess.STDOUT)

    def wait_until(self, condition, timeout=180.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None, f"training ended early:\n{self.output()}"
            assert time.monotonic() < deadline, f"timed out:\n{self.output()}"
            time.sleep(0.001)

    def interrupt(self, signum) -> int:
        assert self.process.poll() is None, f"training ended before the signal:\n{self.output()}"
        self.process.send_signal(signum)
        return self.process.wait(timeout=120)

    def output(self) -> str:
        return self.log.read_text()


def complete_steps(workdir: Path) -> list[int]:
    folder = workdir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def saves_in_flight(workdir: Path) -> list[str]:
    folder = workdir / "checkpoints"
    return [p.name for p in folder.iterdir() if TMP_SUFFIX in p.name] if folder.is_dir() else []


def logged_steps(workdir: Path) -> list[int]:
    import json

    path = workdir / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.exists() else []


def final_state(workdir: Path) -> dict:
    checkpoints = Checkpoints(workdir, read_only=True)
    assert checkpoints.latest_step() == STEPS
    return checkpoints.manager.restore(STEPS)["state"]


def sigterm_self_when(condition, done: threading.Event, delay: float) -> threading.Thread:
    """A thread that sends this process SIGTERM once ``condition()`` holds (plus ``delay``),
    unless the run is ``done`` by then."""

    def watch():
        while not condition():
            if done.wait(0.001):
                return
        time.sleep(delay)
        if not done.is_set():
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_sigkill_and_sigterm_at_random_points_resume_bitwise(tiny_shapes, tmp_path, capsys):
    rng = random.Random(20261123)
    workdir = tmp_path / "interrupted"
    command = ["train", "--config", "configs/shapes.py:smoke", "--workdir", str(workdir)]
    command += [f"--config.{item}" for item in overrides(tiny_shapes)]
    trials = []

    def record(trial, signum, start_step, already_logged, code):
        new_steps = logged_steps(workdir)[already_logged:]
        # Resumed from the last complete checkpoint: the first step it ran is the next one.
        assert not new_steps or new_steps[0] == start_step + 1, (trial, start_step, new_steps)
        trials.append((trial, signum.name, start_step, max(complete_steps(workdir)), code))

    def kill_when(trial, condition, at_once=False):
        start_step = max(complete_steps(workdir), default=0)
        already_logged = len(logged_steps(workdir))
        run = TrainingProcess(tiny_shapes, workdir, tmp_path / f"{trial}.log")
        run.wait_until(condition)
        if not at_once:  # a random moment after the condition, not just at it
            time.sleep(rng.uniform(0.0, MAX_DELAY_S))
        code = run.interrupt(signal.SIGKILL)
        assert code == -signal.SIGKILL
        record(trial, signal.SIGKILL, start_step, already_logged, code)

    for trial, first in (("kill 1", rng.randint(1, 2)), ("kill 2", 1)):
        target = max(complete_steps(workdir), default=0) + first
        kill_when(trial, lambda t=target: max(complete_steps(workdir), default=0) >= t)
    logged = len(logged_steps(workdir))
    # Once this run has logged a step, a temporary folder is its own save (not a leftover of
    # an earlier kill, which opening the checkpoints removes).
    kill_when("kill in save",
              lambda: len(logged_steps(workdir)) > logged and saves_in_flight(workdir),
              at_once=True)
    assert saves_in_flight(workdir), "the kill missed the checkpoint save"
    interrupted = int(saves_in_flight(workdir)[0].split(".")[0])
    last = max(complete_steps(workdir))
    assert last == interrupted - 1  # the half-written step is not listed

    # SIGTERM goes to this process (the CLI in-process saves a process start-up); a stray
    # signal after the run must not end pytest, hence the harmless handler around it.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        start_step, already_logged = last, len(logged_steps(workdir))
        target = last + 1
        done = threading.Event()
        sigterm_self_when(lambda: max(complete_steps(workdir)) >= target, done,
                          rng.uniform(0.0, MAX_DELAY_S))
        with pytest.raises(SystemExit) as stopped_early:
            main(command)
        done.set()
    finally:
        signal.signal(signal.SIGTERM, previous)
    stopped = max(complete_steps(workdir))
    assert (f"stopped by signal at step {stopped}; checkpoint saved in {workdir.absolute()}"
            f"/checkpoints; run the same command to resume") in capsys.readouterr().out
    assert stopped < STEPS
    # Unfinished with its checkpoint saved: EX_TEMPFAIL, which launch scripts requeue on.
    assert stopped_early.value.code == EXIT_STOPPED == 75
    record("sigterm", signal.SIGTERM, start_step, already_logged, EXIT_STOPPED)

    main(command)  # finishes: returns, `sat` exits 0
    assert not saves_in_flight(workdir)  # the killed save's leftover was removed
    assert logged_steps(workdir)[-1] == STEPS

    straight = tmp_path / "straight"
    train_and_evaluate(config_from_args("configs/shapes.py:smoke", overrides(tiny_shapes)
                                        + ["train.checkpoint_every=100"]), straight)
    expected, resumed = final_state(straight), final_state(workdir)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected),
                            jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
    with capsys.disabled():
        print("\nkill/resume trials (name, signal, resumed from, last complete step, exit code):")
        for trial in trials:
            print("  ", trial)


def test_first_signal_requests_a_stop_second_exits_at_once():
    previous = signal.getsignal(signal.SIGTERM)
    with StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        with pytest.raises(SystemExit) as exit_info:
            os.kill(os.getpid(), signal.SIGTERM)
        assert exit_info.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is previous


def test_interrupted_save_and_delete_leftovers_are_removed_and_never_listed(tmp_path):
    state = {"params": {"w": np.arange(3.0)}}
    Checkpoints(tmp_path, keep=1).save(1, state, {})
    folder = tmp_path / "checkpoints"
    # What kills leave behind: a save's temporary folder and a step renamed for deletion.
    for leftover in (folder / f"2{TMP_SUFFIX}" / "state", folder / TRASH / "0" / "meta"):
        leftover.mkdir(parents=True)
        (leftover / "partial").write_bytes(b"\0" * 10)
    assert Checkpoints(tmp_path, read_only=True).steps() == [1]
    checkpoints = Checkpoints(tmp_path, keep=1)
    assert sorted(p.name for p in folder.iterdir()) == ["1"]
    checkpoints.save(2, state, {})
    checkpoints.save(3, state, {})
    assert checkpoints.steps() == [3] and sorted(p.name for p in folder.iterdir()) == ["3"]


def test_unwritable_workdir_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--config", "configs/shapes.py:smoke", "--workdir", str(blocker / "run"),
              "--config.data.data_dir=/nonexistent"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert f"workdir {blocker / 'run'} is not writable" in err and len(err.splitlines()) == 1
    assert blocker.read_text() == "not a folder"


def test_full_disk_is_reported_before_training(tmp_path, monkeypatch):
    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pathlib.Path, "write_text", no_space)
    with pytest.raises(OSError, match=f"workdir {tmp_path} is not writable: No space left"):
        check_workdir_writable(tmp_path)


def assert_same_state(expected_workdir: Path, workdir: Path) -> None:
    expected, actual = final_state(expected_workdir), final_state(workdir)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected),
                            jax.tree.leaves(actual), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow
def test_second_train_on_a_workdir_refuses_and_the_first_ends_as_a_lone_run(tiny_shapes, tmp_path,
                                                                            capsys):
    workdir = tmp_path / "shared"
    first = TrainingProcess(tiny_shapes, workdir, tmp_path / "first.log")
    lock = workdir / LOCK_FILE
    first.wait_until(lambda: lock.is_file() and f"pid {first.process.pid} " in lock.read_text())
    command = ["train", "--config", "configs/shapes.py:smoke", "--workdir", str(workdir)]
    with pytest.raises(SystemExit) as exit_info:
        main(command + [f"--config.{item}" for item in overrides(tiny_shapes)]
             + ["--config.train.learning_rate=0.5"])  # a user's second, different launch
    assert first.process.poll() is None, "the first run ended before the second was refused"
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and len(err.strip().splitlines()) == 1, err
    assert (f"{workdir} is in use by another `sat train` (pid {first.process.pid} on host "
            f"{socket.gethostname()}") in err
    assert first.process.wait(timeout=300) == 0, first.output()
    assert logged_steps(workdir) == list(range(1, STEPS + 1))  # one writer's log
    assert '"learning_rate": 0.5' not in (workdir / "config.json").read_text()
    lone = tmp_path / "lone"
    train_and_evaluate(config_from_args("configs/shapes.py:smoke", overrides(tiny_shapes)
                                        + ["train.checkpoint_every=100"]), lone)
    assert_same_state(lone, workdir)


def test_lock_names_its_holder_and_is_free_again_after_sigkill(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from show_attend_tell.workdir_lock import "
         "WorkdirLock\nwith WorkdirLock(sys.argv[1]): time.sleep(600)", str(tmp_path)],
        cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while f"pid {holder.pid} " not in WorkdirLock(tmp_path).holder():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(WorkdirBusy, match=f"in use by another `sat train` \\(pid {holder.pid} "):
            WorkdirLock(tmp_path).__enter__()
    finally:
        holder.kill()
        holder.wait()
    with WorkdirLock(tmp_path) as lock:  # no stale lock, nothing to clean up by hand
        assert f"pid {os.getpid()} " in lock.holder()


@pytest.mark.slow
def test_readers_survive_training_that_prunes_every_step(tiny_shapes, tmp_path):
    """`sat evaluate`'s loading, repeated while `sat train` saves a step and drops the previous
    one every step (so most steps are pruned while they are read): every load succeeds."""
    from show_attend_tell.evaluation import load_chosen

    workdir = tmp_path / "run"
    # Far more steps than the test waits for: the reader, not a race with the training's end,
    # decides how many loads happen; a signal then ends the training.
    training = TrainingProcess(tiny_shapes, workdir, tmp_path / "train.log",
                               extra=("train.keep_checkpoints=1", "train.steps=100000"))
    training.wait_until(lambda: complete_steps(workdir))
    loaded = []
    while len({step for step, _ in loaded}) < 3:
        assert training.process.poll() is None, training.output()
        *_, step, how = load_chosen(workdir)
        loaded.append((step, how))
    assert training.interrupt(signal.SIGTERM) == EXIT_STOPPED, training.output()
    assert all(step >= 1 for step, _ in loaded), loaded
    assert all(how.startswith("latest: no validated step kept (default)") for _, how in loaded)
    assert not list((workdir / "checkpoints").glob(".pinned-*"))


def test_pins_of_killed_readers_are_removed_when_training_reopens(tmp_path):
    Checkpoints(tmp_path).save(1, {"params": {"w": np.arange(3.0)}}, {})
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    host, folder = socket.gethostname(), tmp_path / "checkpoints"
    abandoned = folder / f".pinned-{host}-{gone}-0a0a" / "checkpoints" / "1"
    live = folder / f".pinned-{host}-{os.getpid()}-0b0b" / "checkpoints" / "1"
    for pin in (abandoned, live):
        pin.mkdir(parents=True)
    Checkpoints(tmp_path)
    assert not abandoned.parent.parent.exists() and live.is_dir()
    with Checkpoints(tmp_path, read_only=True).pinned(1) as reader:
        assert reader.steps() == [1] and reader.directory != folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(["1", live.parent.parent.name])
