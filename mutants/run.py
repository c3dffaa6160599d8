"""Mutation testing: plant each bug of mutants/mutants.toml and check that its tests fail.

Run from the repository root (``make mutants``):
  python mutants/run.py                  # every mutant
  python mutants/run.py --only ID,ID     # some of them (develop a test against one bug)
  python mutants/run.py --baseline       # also run each selection unmutated (must pass)

The working tree is never edited: the tracked and untracked-but-not-ignored files are copied
to a temporary directory once, each mutant is written into that copy, its tests run there
(``pytest -x -q``, one process, a per-mutant timeout), and the file is put back. XLA's
compilation cache (``.jax_cache``) is shared with the working tree, so only programs a
mutant changes are compiled again. Prints KILLED/SURVIVED per mutant, the score, and a JSON
summary on the last line; exits non-zero when a snippet is stale (not exactly once in its
file), an unmutated selection fails under ``--baseline``, or the score is below ``--min_score``.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants" / "mutants.toml"


def load(path: Path) -> list[dict]:
    mutants = tomllib.loads(path.read_text())["mutant"]
    ids = [m["id"] for m in mutants]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SystemExit(f"{path}: duplicate mutant ids {duplicates}")
    for m in mutants:
        missing = {"id", "file", "original", "replacement", "tests", "description"} - set(m)
        if missing:
            raise SystemExit(f"{path}: mutant {m.get('id', '?')} lacks {sorted(missing)}")
    return mutants


def copy_repository(destination: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    cache = ROOT / ".jax_cache"
    cache.mkdir(exist_ok=True)
    (destination / ".jax_cache").symlink_to(cache)


def run_tests(copy: Path, tests: list[str], timeout: float) -> tuple[str, float, str]:
    """('passed' | 'failed' | 'timeout' | 'error', seconds, last lines of output)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # no stale .pyc between mutants
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider",
               *tests]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start, ""
    seconds = time.perf_counter() - start
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-3:])
    if done.returncode == 0:
        return "passed", seconds, tail
    if done.returncode == 1:
        return "failed", seconds, tail
    return "error", seconds, tail  # collection errors, no tests selected, ...


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated mutant ids")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per mutant")
    parser.add_argument("--baseline", action="store_true",
                        help="first run each selection unmutated; it must pass")
    parser.add_argument("--min_score", type=float, default=0.0,
                        help="exit non-zero below this fraction killed")
    args = parser.parse_args(argv)
    mutants = load(MUTANTS)
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {m["id"] for m in mutants})
        if unknown:
            raise SystemExit(f"--only: unknown mutant ids {unknown}")
        mutants = [m for m in mutants if m["id"] in wanted]

    results, problems = [], []
    with tempfile.TemporaryDirectory(prefix="sat-mutants-") as tmp:
        copy = Path(tmp)
        copy_repository(copy)
        imported = subprocess.run(
            [sys.executable, "-c", "import show_attend_tell; print(show_attend_tell.__file__)"],
            cwd=copy, capture_output=True, text=True, check=True).stdout.strip()
        if not Path(imported).resolve().is_relative_to(copy.resolve()):
            raise SystemExit(f"the copy imports show_attend_tell from {imported}, not {copy}")
        for m in mutants:
            path = copy / m["file"]
            original = path.read_text()
            count = original.count(m["original"])
            if count != 1:
                problems.append(f"{m['id']}: its snippet occurs {count} times in {m['file']}")
                print(f"STALE     {m['id']}: snippet found {count} times in {m['file']}",
                      flush=True)
                continue
            if args.baseline:
                status, seconds, tail = run_tests(copy, m["tests"], args.timeout)
                if status != "passed":
                    problems.append(f"{m['id']}: its tests {status} without the mutant")
                    print(f"BASELINE  {m['id']}: tests {status} unmutated ({seconds:.0f} s)\n"
                          f"{tail}", flush=True)
                    continue
            path.write_text(original.replace(m["original"], m["replacement"]))
            try:
                status, seconds, tail = run_tests(copy, m["tests"], args.timeout)
            finally:
                path.write_text(original)
            killed = status in ("failed", "timeout")
            if status == "error":
                problems.append(f"{m['id']}: pytest could not run its tests:\n{tail}")
            verdict = "KILLED" if killed else ("ERROR" if status == "error" else "SURVIVED")
            print(f"{verdict:<9} {m['id']:<42} {seconds:6.1f} s  {m['description']}",
                  flush=True)
            results.append({"id": m["id"], "file": m["file"], "status": verdict.lower(),
                            "pytest": status, "seconds": round(seconds, 1)})

    killed = sum(r["status"] == "killed" for r in results)
    score = killed / len(results) if results else 0.0
    survivors = [r["id"] for r in results if r["status"] != "killed"]
    print(f"\n{killed}/{len(results)} mutants killed ({100 * score:.1f} %); "
          f"survived: {', '.join(survivors) or 'none'}")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(json.dumps({"killed": killed, "total": len(results), "score": round(score, 4),
                      "survived": survivors, "problems": problems, "mutants": results}))
    return 1 if problems or score < args.min_score else 0


if __name__ == "__main__":
    sys.exit(main())
