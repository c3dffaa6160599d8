"""The `sat` command line: usage errors exit 2, user errors print one line and exit 1."""

import subprocess
import sys

import pytest

from show_attend_tell.cli import main


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err


@pytest.mark.parametrize("argv", [["frobnicate"], ["train", "--bogus", "1"], []])
def test_usage_errors_exit_2(argv, capsys):
    code, err = run_main(argv, capsys)
    assert code == 2
    assert "usage: sat" in err


@pytest.mark.parametrize("argv,message", [
    (["train", "--config", "configs/nope.py", "--workdir", "x"], "'configs/nope.py' does not exist"),
    (["train", "--config", "configs/shapes.py", "--workdir", "x", "--config.train.stepz=3"],
     "--config.train.stepz: unknown key"),
    (["train", "--config", "configs/shapes.py:smoke", "--workdir", "x", "--config.train.steps",
      "many"], "expected a int"),
])
def test_config_errors_are_one_line_exit_1(argv, message, capsys):
    code, err = run_main(argv, capsys)
    assert code == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_evaluate_without_checkpoint_is_one_line_exit_1(capsys, tmp_path):
    code, err = run_main(["evaluate", "--workdir", str(tmp_path)], capsys)
    assert code == 1
    assert "no checkpoints/ directory" in err and len(err.strip().splitlines()) == 1


def test_module_entry_point_prints_usage():
    result = subprocess.run([sys.executable, "-m", "show_attend_tell", "--help"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for command in ("train", "evaluate", "caption", "compare", "data"):
        assert command in result.stdout
