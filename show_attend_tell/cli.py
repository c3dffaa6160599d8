"""``sat``: one entry point with subcommands train, evaluate, caption, compare, data.

Errors the user can fix (bad config, missing file, unknown checkpoint) print one line and
exit 1; usage errors exit 2 (argparse).
"""

import argparse
import os
import sys


def _split_config_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Pull ``--config.a.b=value`` (or ``--config.a.b value``) out of argv."""
    rest, overrides = [], []
    items = iter(argv)
    for item in items:
        if item.startswith("--config."):
            body = item[len("--config."):]
            if "=" not in body:
                value = next(items, None)
                if value is None:
                    build_parser().error(f"{item} needs a value: --config.<key>=<value>")
                body = f"{body}={value}"
            overrides.append(body)
        else:
            rest.append(item)
    return rest, overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sat", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train (or resume) a captioner")
    train.add_argument("--config", required=True, help="configs/<name>.py[:variant]")
    train.add_argument("--workdir", required=True, help="run directory (resumes if it has one)")

    evaluate = commands.add_parser("evaluate", help="caption a split and score it")
    evaluate.add_argument("--workdir", required=True)
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--beam_size", type=int, default=None)
    evaluate.add_argument("--checkpoint", default="latest", help="latest, best or a step")
    evaluate.add_argument("--num_images", type=int, default=0, help="0 = the whole split")

    caption = commands.add_parser("caption", help="caption image files, write overlays")
    caption.add_argument("--workdir", required=True)
    caption.add_argument("images", nargs="+")
    caption.add_argument("--out", default=None, help="overlay folder (default WORKDIR/captions)")
    caption.add_argument("--beam_size", type=int, default=None)
    caption.add_argument("--checkpoint", default="latest")

    compare = commands.add_parser("compare", help="Markdown report comparing run directories")
    compare.add_argument("runs", nargs="+")
    compare.add_argument("--out", default="report")
    compare.add_argument("--images", type=int, default=3, help="test images to overlay")

    data = commands.add_parser("data", help="datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    build = data_commands.add_parser("build", help="build a TFDS dataset")
    build.add_argument("name", help="shapes | karpathy/flickr8k | karpathy/flickr30k | karpathy/coco")
    build.add_argument("--data_dir", default="data/tfds")
    build.add_argument("--builder_config", default=None)
    build.add_argument("--manual_dir", default=None, help="karpathy: folder with JSON + images")
    return parser


def run(args, overrides: list[str]) -> None:
    if args.command == "train":
        from show_attend_tell.config_loading import config_from_args
        from show_attend_tell.train import train_and_evaluate

        train_and_evaluate(config_from_args(args.config, overrides), args.workdir)
    elif args.command == "evaluate":
        from show_attend_tell.evaluation import evaluate_checkpoint

        evaluate_checkpoint(args.workdir, args.split, args.beam_size, args.checkpoint,
                            args.num_images)
    elif args.command == "caption":
        from show_attend_tell.evaluation import caption_files

        failures = caption_files(args.workdir, args.images, args.out, args.beam_size,
                                 args.checkpoint)
        if failures:
            raise SystemExit(1)
    elif args.command == "compare":
        from show_attend_tell.compare import compare_runs

        compare_runs(args.runs, args.out, args.images)
    elif args.command == "data":
        from show_attend_tell.data.build import build_dataset

        options = {"manual_dir": args.manual_dir} if args.manual_dir else {}
        build_dataset(args.name, args.data_dir, args.builder_config, **options)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    argv = sys.argv[1:] if argv is None else argv
    rest, overrides = _split_config_overrides(argv)
    args = build_parser().parse_args(rest)
    if overrides and args.command != "train":
        build_parser().error("--config.* overrides only apply to 'sat train'")
    from show_attend_tell.parallel import maybe_initialize_distributed

    maybe_initialize_distributed()
    from show_attend_tell.errors import USER_ERRORS

    try:
        run(args, overrides)
    except USER_ERRORS as error:
        if os.environ.get("SAT_DEBUG"):
            raise
        print(f"sat {args.command}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
