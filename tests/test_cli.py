"""The `sat` command line: usage errors exit 2, user errors print one line and exit 1."""

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from show_attend_tell.cli import build_parser, main
from show_attend_tell.errors import InvalidInput, MissingInput

ROOT = Path(__file__).resolve().parent.parent


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
    (["train", "--config", "configs/coco.py:scst_hard", "--workdir", "x"],
     "configs/coco.py: unknown variant 'scst_hard'; expected soft, hard, smoke, smoke_hard, scst"),
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


def subcommands(parser: argparse.ArgumentParser, path=("sat",)):
    """(path, parser) of every command a user can run, nested ones included."""
    found = False
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found = True
                yield from subcommands(sub, (*path, name))
    if not found:
        yield " ".join(path), parser


def test_every_command_has_a_description_and_every_option_help_and_default():
    commands = dict(subcommands(build_parser()))
    assert {"sat train", "sat evaluate", "sat caption", "sat compare", "sat data build",
            "sat data cache-features", "sat data rehearsal", "sat weights import"} == set(commands)
    for name, parser in commands.items():
        assert parser.description and "\n" not in parser.description, name
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest}: no help"
            shown = action.default is not None and action.nargs != 0
            if shown:  # what the option is when not given, e.g. "(default: test)"
                assert f"(default: {action.default})" in " ".join(text.split()), (name, action.dest)


def test_train_help_tells_how_to_set_config_keys(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--config.<key>=<value>" in out and "--workdir WORKDIR run directory" in out


@pytest.mark.slow
def test_evaluate_finds_moved_data_with_data_dir(tiny_shapes, tmp_path, capsys):
    """A run whose dataset folder has gone: evaluate says so in one line naming --data_dir,
    and evaluates with --data_dir pointing at the data's new place."""
    from show_attend_tell.config_loading import config_from_args
    from show_attend_tell.train import train_and_evaluate

    moved = tmp_path / "tfds_then"
    shutil.copytree(tiny_shapes, moved)
    run = tmp_path / "run"
    train_and_evaluate(config_from_args("configs/shapes.py:smoke", [
        f"data.data_dir={moved}", "data.builder_config=tiny", "train.eval_every=0"]), run)
    shutil.rmtree(moved)
    capsys.readouterr()
    code, err = run_main(["evaluate", "--workdir", str(run), "--num_images", "8"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert f"config.data.data_dir {str(moved)!r} does not exist; expected --data_dir" in err
    assert not (run / "eval").exists()
    main(["evaluate", "--workdir", str(run), "--num_images", "8", "--data_dir", str(tiny_shapes)])
    report = run / "eval" / "test_2_8images.json"
    assert report.is_file() and '"images": 8' in report.read_text()


@pytest.mark.parametrize("error, one_line", [
    (InvalidInput("config.train.steps=-1; expected a positive number"), True),
    (MissingInput("data/tfds/shapes: not built; run sat data build shapes"), True),
    (ValueError("operands could not be broadcast together"), False),  # a bug, not a user's
    (OSError("[Errno 28] No space left on device"), False),
])
def test_only_user_errors_are_one_line_bugs_keep_their_traceback(monkeypatch, capsys, error,
                                                                  one_line):
    def fail(*_):
        raise error

    monkeypatch.setattr("show_attend_tell.cli.run", fail)
    if one_line:
        with pytest.raises(SystemExit) as exit_info:
            main(["compare", "runs/a"])
        assert exit_info.value.code == 1
        assert capsys.readouterr().err == f"sat compare: error: {error}\n"
    else:
        with pytest.raises(type(error), match=str(error)[:20].replace("[", r"\[")):
            main(["compare", "runs/a"])


# Raised by code paths a user cannot reach with any input: internal invariants, tracebacks kept.
INTERNAL_RAISES = {("eval_records.py", "alphas must be"), ("scene.py", "unknown shape"),
                   ("encoders.py", "is registered twice")}


def test_the_package_raises_user_errors_through_the_project_types():
    """A built-in ValueError/OSError raised by the package itself would print as a traceback
    (the CLI turns only errors.UserError into one line): each raise names a project type."""
    offenders = []
    for path in sorted(ROOT.glob("show_attend_tell/**/*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = re.search(r"raise (ValueError|FileNotFoundError|FileExistsError|OSError|"
                              r"RuntimeError|PermissionError)\(", line)
            if match and not any(path.name == name and text in line
                                 for name, text in INTERNAL_RAISES):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
