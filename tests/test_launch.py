"""The launchers in launch/, run here against fake `gcloud`, `srun` and `scontrol` executables
that record their arguments: what the TPU script ships and runs on a worker (executed in a fake
worker home), the SLURM script's flags and requeue on exit status 75, the dry runs, and the
local launcher stopping the survivors of a failed process. No accelerator and no network."""

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch"
SCRIPTS = sorted([*LAUNCH.glob("*.sh"), *LAUNCH.glob("*.sbatch")])

# Records its arguments as one JSON line; `scp SRC DEST` also keeps a copy of SRC (what would be
# shipped); `ssh --command=CMD` runs CMD with bash in the fake worker's home when FAKE_EXEC=1.
FAKE_GCLOUD = """#!{python}
import json, os, shutil, subprocess, sys
fake = os.environ["FAKE_DIR"]
argv = sys.argv[1:]
with open(os.path.join(fake, "calls.jsonl"), "a") as calls:
    calls.write(json.dumps(argv) + "\\n")
if argv[3] == "scp":
    shutil.copy(argv[4], os.path.join(fake, "shipped.tgz"))
if argv[3] == "ssh" and os.environ.get("FAKE_EXEC"):
    command = next(a for a in argv if a.startswith("--command="))[len("--command="):]
    env = dict(os.environ, HOME=os.path.join(fake, "home"))
    sys.exit(subprocess.run(["bash", "-c", command], env=env, cwd=env["HOME"]).returncode)
"""
# One task: drops srun's options and runs the rest as task 0 of the job.
FAKE_SRUN = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$FAKE_DIR/srun.txt"
while [[ $1 == -* ]]; do shift; done
SLURM_PROCID=0 SLURM_LOCALID=0 exec "$@"
"""
FAKE_SCONTROL = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$FAKE_DIR/scontrol.txt"
"""


def write_executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def fake(tmp_path):
    """A directory with fake gcloud/srun/scontrol first on PATH, and the env to run with."""
    bin_dir = tmp_path / "bin"
    write_executable(bin_dir / "gcloud", FAKE_GCLOUD.format(python=sys.executable))
    write_executable(bin_dir / "srun", FAKE_SRUN)
    write_executable(bin_dir / "scontrol", FAKE_SCONTROL)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SLURM_", "DRY_RUN", "WORKER", "PROJECT"))}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", FAKE_DIR=str(tmp_path), TPU_NAME="pod",
               ZONE="us-central2-b")
    return tmp_path, env


def gcloud_calls(directory: Path) -> list[list[str]]:
    path = directory / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_script(name, args, env, timeout=60, **extra_env):
    return subprocess.run(["bash", str(LAUNCH / name), *args], cwd=ROOT, env={**env, **extra_env},
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_launch_scripts_parse(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- Cloud TPU VM -------------------------------------------------------------------------------

def package_files_on_disk() -> set[str]:
    """Every file of the package and the configs, as on disk (bytecode caches aside)."""
    files = set()
    for top in ("show_attend_tell", "configs"):
        for path in (ROOT / top).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.add(path.relative_to(ROOT).as_posix())
    return files


@pytest.mark.slow
def test_tpu_setup_ships_every_package_file_and_installs_python_311(fake, tmp_path):
    directory, env = fake
    result = run_script("tpu_vm.sh", ["setup"], env)
    assert result.returncode == 0, result.stderr
    with tarfile.open(directory / "shipped.tgz") as archive:
        shipped = {name.removeprefix("./") for name in archive.getnames()}
        archive.extractall(tmp_path / "worker", filter="data")
    tracked = subprocess.run(["git", "ls-files", "show_attend_tell", "configs", "pyproject.toml",
                              "README.md"], cwd=ROOT, capture_output=True, text=True, check=True)
    expected = set(tracked.stdout.split()) | package_files_on_disk()
    assert any(name.startswith("show_attend_tell/data/") for name in expected)
    assert not expected - shipped, f"not shipped: {sorted(expected - shipped)[:10]}"
    assert not {name for name in shipped if name.split("/")[0] in (".venv", "runs", ".git")}
    # Every module imports from the shipped copy alone (what failed on every worker before).
    check = ("import importlib, pkgutil, sys, show_attend_tell as p\n"
             "names = [m.name for m in pkgutil.walk_packages(p.__path__, 'show_attend_tell.')\n"
             "         if not m.name.endswith('__main__')]\n"
             "[importlib.import_module(n) for n in names]\n"
             "assert p.__file__.startswith(sys.argv[1]), p.__file__\nprint(len(names))")
    imported = subprocess.run([sys.executable, "-c", check, str(tmp_path / "worker")],
                              cwd=tmp_path / "worker",
                              env={**env, "PYTHONPATH": str(tmp_path / "worker")},
                              capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr[-2000:]
    modules = {name for name in expected if name.startswith("show_attend_tell/")
               and name.endswith(".py")}
    # All but show_attend_tell/__init__.py and __main__.py (which would run the CLI).
    assert int(imported.stdout.split()[-1]) == len(modules) - 2
    calls = gcloud_calls(directory)
    assert [call[3] for call in calls] == ["scp", "ssh"]
    assert all("--worker=all" in call and "--zone=us-central2-b" in call for call in calls)
    install = next(a for a in calls[1] if a.startswith("--command="))
    # Python >= 3.11 from what a stock TPU VM has: uv (pip --user, else its installer).
    assert "pip install -q --user uv" in install and "uv venv -q --python 3.11 .venv" in install
    assert "'jax[tpu]'" in install and "python3 -m venv" not in install


@pytest.fixture
def worker(fake):
    """A fake worker home holding a fake `sat`: prints its arguments, exits 75 on SIGTERM."""
    directory, env = fake
    home = directory / "home"
    write_executable(home / "show_attend_tell" / ".venv" / "bin" / "sat", """#!/usr/bin/env bash
echo "sat $* SAT_DISTRIBUTED=$SAT_DISTRIBUTED"
echo $$ > "$HOME/sat.pid"
trap 'echo "checkpoint saved"; exit 75' TERM
while :; do sleep 0.1; done
""")
    yield directory, {**env, "FAKE_EXEC": "1"}
    pid_file = home / "sat.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


def wait_for(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_tpu_train_runs_detached_with_a_log_per_worker_then_logs_and_stop(worker):
    directory, env = worker
    home = directory / "home"
    args = ["train", "--config", "configs/coco.py:soft", "--workdir", "gs://bucket/runs/x y"]
    # The ssh command returns while training goes on (the old script ran it in the foreground).
    started = run_script("tpu_vm.sh", args, env, timeout=20)
    assert started.returncode == 0, started.stderr
    wait_for(lambda: (home / "sat.pid").exists())
    pid = int((home / "sat.pid").read_text())
    assert alive(pid)
    assert os.getsid(pid) != os.getsid(0)  # its own session: a dropped ssh does not reach it
    os.kill(pid, signal.SIGHUP)  # nohup: a hang-up is ignored
    time.sleep(0.3)
    assert alive(pid)
    log = home / "show_attend_tell" / "logs" / "latest.log"
    wait_for(lambda: log.exists() and "SAT_DISTRIBUTED" in log.read_text())
    assert log.read_text().splitlines()[0] == (
        "sat train --config configs/coco.py:soft --workdir gs://bucket/runs/x y "
        "SAT_DISTRIBUTED=auto")
    again = run_script("tpu_vm.sh", args, env, timeout=20)
    assert again.returncode != 0 and "already running" in again.stderr
    logs = run_script("tpu_vm.sh", ["logs"], env, timeout=20)
    assert "running] sat train --config" in logs.stdout
    stopped = run_script("tpu_vm.sh", ["stop"], env, timeout=20)
    assert stopped.returncode == 0, stopped.stderr
    assert not alive(pid) and "checkpoint saved" in stopped.stdout
    assert all("--worker=all" in call for call in gcloud_calls(directory))


@pytest.mark.parametrize("verb", ["setup", "train", "logs", "stop", "cleanup"])
def test_tpu_dry_run_prints_the_commands_it_would_run(fake, verb):
    directory, env = fake
    args = [verb, "--workdir", "gs://b/r"] if verb == "train" else [verb]
    archive = {"ARCHIVE": str(directory / "sat.tgz")}
    dry = run_script("tpu_vm.sh", args, env, DRY_RUN="1", **archive)
    assert dry.returncode == 0, dry.stderr
    assert gcloud_calls(directory) == []  # nothing ran
    printed = "\n".join(line for line in dry.stdout.splitlines() if not line.startswith("ship"))
    subprocess.run(["bash", "-c", printed], env=env, check=True)  # the printed lines, run
    from_printed = gcloud_calls(directory)
    (directory / "calls.jsonl").unlink()
    assert run_script("tpu_vm.sh", args, env, **archive).returncode == 0
    direct = gcloud_calls(directory)
    if verb == "train":  # log names hold the start time
        from_printed, direct = ([[re.sub(r"\d{8}-\d{6}", "TIME", a) for a in call]
                                 for call in calls] for calls in (from_printed, direct))
    assert from_printed == direct and direct
    assert all(call[:3] == ["compute", "tpus", "tpu-vm"] and "--worker=all" in call
               for call in direct)
    if verb == "train":
        assert "SAT_DISTRIBUTED=auto setsid nohup $HOME/show_attend_tell/.venv/bin/sat train" in printed
    if verb == "cleanup":
        assert "sudo lsof -t -w /dev/accel* /dev/vfio/*" in printed
        assert "libtpu_lockfile" in printed and "pkill -KILL -f" in printed


# --- SLURM --------------------------------------------------------------------------------------

def sbatch_directives() -> dict[str, str]:
    lines = (LAUNCH / "slurm.sbatch").read_text().splitlines()
    options = [line.split(maxsplit=1)[1] for line in lines if line.startswith("#SBATCH")]
    return dict(option.partition("=")[::2] for option in options)


def test_slurm_one_task_per_gpu_with_every_gpu_visible():
    directives = sbatch_directives()
    assert "--gpus-per-task" not in directives  # jax#28194: one visible GPU, ordinal LOCALID
    assert directives["--ntasks-per-node"] == directives["--gpus-per-node"]
    assert "--requeue" in directives and directives["--signal"].startswith("TERM@")


def test_jax_gives_each_slurm_task_the_gpu_of_its_local_rank(monkeypatch):
    """What the script relies on: JAX's SLURM detection (task 9 = local rank 1 on node004)."""
    from jax._src import clusters

    for key in list(os.environ):
        if key.startswith(("SLURM_", "OMPI_", "KUBERNETES", "JAX_COORDINATOR")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node[003-004]")
    monkeypatch.setenv("SLURM_NTASKS", "16")
    monkeypatch.setenv("SLURM_PROCID", "9")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    detected = clusters.ClusterEnv.auto_detect_unset_distributed_params(
        None, None, None, None, None, None)
    port = 4242 % 2**12 + 65535 - 2**12 + 1
    assert tuple(detected) == (f"node003:{port}", 16, 9, [1])


@pytest.fixture
def slurm_job(fake):
    directory, env = fake
    submit = directory / "submit"
    # On 75 the stop signal reaches the whole task, as SLURM signals every process of a step.
    write_executable(submit / ".venv" / "bin" / "sat", """#!/usr/bin/env bash
echo "SAT_DISTRIBUTED=$SAT_DISTRIBUTED $*" >> "$FAKE_DIR/sat.txt"
if [ "$FAKE_STATUS" = 75 ]; then kill -TERM "$PPID"; sleep 0.2; fi
exit "$FAKE_STATUS"
""")
    return directory, {**env, "SLURM_JOB_ID": "4242", "SLURM_SUBMIT_DIR": str(submit),
                       "SLURM_NTASKS_PER_NODE": "8", "SLURM_GPUS_PER_NODE": "h100:8",
                       "SLURM_CPUS_PER_TASK": "12"}


@pytest.mark.parametrize("status, requeued", [(75, True), (0, False), (1, False)])
def test_slurm_requeues_itself_when_sat_stops_before_the_end(slurm_job, status, requeued):
    directory, env = slurm_job
    result = run_script("slurm.sbatch", ["train", "--workdir", "/shared/x"], env,
                        FAKE_STATUS=str(status))
    assert result.returncode == (1 if status == 1 else 0), result.stderr
    assert (directory / "sat.txt").read_text() == "SAT_DISTRIBUTED=auto train --workdir /shared/x\n"
    scontrol = directory / "scontrol.txt"
    assert (scontrol.read_text() if scontrol.exists() else "") == (
        "requeue 4242\n" if requeued else "")
    srun = (directory / "srun.txt").read_text().split()
    assert {"--kill-on-bad-exit=1", "--gpu-bind=none", "--output=logs/%j_%t.log",
            "--cpus-per-task=12"} <= set(srun)
    assert not list((directory / "submit" / "logs").glob("*.stopped"))


def test_slurm_refuses_tasks_that_do_not_match_gpus(slurm_job):
    directory, env = slurm_job
    result = run_script("slurm.sbatch", ["train"], env, SLURM_NTASKS_PER_NODE="4",
                        FAKE_STATUS="0")
    assert result.returncode == 1
    assert result.stderr.strip().endswith("--ntasks-per-node=4 must equal --gpus-per-node=8")
    assert not (directory / "srun.txt").exists()


def test_slurm_dry_run_outside_slurm_prints_the_srun_command(fake):
    directory, env = fake
    result = run_script("slurm.sbatch", ["train", "--workdir", "/shared/x"], env)
    assert result.returncode == 0, result.stderr
    assert not (directory / "srun.txt").exists()
    srun_line, requeue_line = result.stdout.splitlines()
    argv = shlex.split(srun_line)
    assert argv[0] == "srun" and "--gpu-bind=none" in argv and "--kill-on-bad-exit=1" in argv
    assert "SAT_DISTRIBUTED=auto" in argv and argv[-4:] == [".venv/bin/sat", "train", "--workdir",
                                                            "/shared/x"]
    assert "status 75" in requeue_line and "scontrol requeue" in requeue_line


# --- this machine -------------------------------------------------------------------------------

FAKE_PROCESS = """#!/usr/bin/env bash
# Process 0 exits with $FAIL_STATUS after a moment; the others run on (ignoring SIGTERM if asked).
echo $$ > "$FAKE_DIR/pid$SAT_PROCESS_ID"
if [ "$SAT_PROCESS_ID" = 0 ]; then sleep 0.3; exit "$FAIL_STATUS"; fi
[ -z "$IGNORE_TERM" ] || trap '' TERM
sleep "$SURVIVOR_SECONDS"
touch "$FAKE_DIR/finished$SAT_PROCESS_ID"
exit "$SURVIVOR_STATUS"
"""


@pytest.mark.parametrize("ignore_term", ["", "1"], ids=["exits-on-term", "ignores-term"])
def test_local_launcher_stops_the_others_when_one_process_fails(fake, ignore_term):
    directory, env = fake
    sat = write_executable(directory / "sat", FAKE_PROCESS)
    begin = time.monotonic()
    result = run_script("local_multiprocess.sh", ["3", "1", "train"], env, timeout=30, SAT=str(sat),
                        FAIL_STATUS="3", SURVIVOR_SECONDS="60", SURVIVOR_STATUS="0",
                        IGNORE_TERM=ignore_term, KILL_AFTER="1")
    assert result.returncode == 3, result.stderr
    assert time.monotonic() - begin < 10
    assert "process 0 exited with status 3" in result.stderr
    for index in (1, 2):
        assert not alive(int((directory / f"pid{index}").read_text()))
        assert not (directory / f"finished{index}").exists()


@pytest.mark.parametrize("ignore_term", ["", "1"], ids=["exits-on-term", "ignores-term"])
def test_local_launcher_stops_a_process_that_is_still_starting(fake, ignore_term):
    """Process 2 is still in its start-up (no session of its own yet) when process 0 fails: it is
    stopped all the same and never runs, and every process is gone when the launcher returns."""
    directory, env = fake
    sat = write_executable(directory / "sat", FAKE_PROCESS)
    write_executable(directory / "bin" / "setsid", f"""#!/usr/bin/env bash
[ "$SAT_PROCESS_ID" != 2 ] || sleep 2
exec {shutil.which("setsid")} "$@"
""")
    result = run_script("local_multiprocess.sh", ["3", "1", "train"], env, timeout=30, SAT=str(sat),
                        FAIL_STATUS="3", SURVIVOR_SECONDS="60", SURVIVOR_STATUS="0",
                        IGNORE_TERM=ignore_term, KILL_AFTER="1")
    assert result.returncode == 3, result.stderr
    assert not alive(int((directory / "pid1").read_text()))
    time.sleep(2.5)  # past process 2's start-up delay: it would have written its pid by now
    pid2 = directory / "pid2"
    assert not pid2.exists() or not alive(int(pid2.read_text())), "process 2 outlived the stop"


def test_local_launcher_waits_for_peers_finishing_a_stop(fake):
    """75 (stopped after a checkpoint) is not a failure: a slower peer is left to finish."""
    directory, env = fake
    sat = write_executable(directory / "sat", FAKE_PROCESS)
    result = run_script("local_multiprocess.sh", ["2", "1", "train"], env, timeout=30, SAT=str(sat),
                        FAIL_STATUS="75", SURVIVOR_SECONDS="1.5", SURVIVOR_STATUS="75",
                        KILL_AFTER="0")
    assert result.returncode == 75, result.stderr
    assert (directory / "finished1").exists()


def test_local_launcher_passes_sigterm_on_to_every_process(fake):
    directory, env = fake
    sat = write_executable(directory / "sat", """#!/usr/bin/env bash
trap 'touch "$FAKE_DIR/term$SAT_PROCESS_ID"; exit 75' TERM
touch "$FAKE_DIR/up$SAT_PROCESS_ID"
for _ in $(seq 300); do sleep 0.1; done
""")
    launcher = subprocess.Popen(["bash", str(LAUNCH / "local_multiprocess.sh"), "2", "1", "train"],
                                cwd=ROOT, env={**env, "SAT": str(sat)}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (directory / "up0").exists() and (directory / "up1").exists())
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=10) == 75
    finally:
        launcher.kill()
    assert (directory / "term0").exists() and (directory / "term1").exists()
