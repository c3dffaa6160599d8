"""``sat compare RUN_DIR... [--out report/]``: a Markdown report comparing runs.

Reads each run directory (config.json, metrics.jsonl, eval/*.json) and writes
``<out>/README.md`` with the final test metrics, training time and steps, loss and validation
curves (one line per run), and the attention of every run on the same test images; and
``<out>/index.html``, the same explorable in a browser (:mod:`show_attend_tell.report_html`).
"""

import io
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np

from show_attend_tell.data import pipeline
from show_attend_tell.decoding import decode_images
from show_attend_tell.errors import MissingInput
from show_attend_tell.evaluation import load_for_inference
from show_attend_tell.paths import Path, absolute  # noqa: E402
from show_attend_tell.report_html import write_report
from show_attend_tell.report_images import export_images
from show_attend_tell.visualize import attention_overlay

COLUMNS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr",
           "scene_accuracy", "pointing_accuracy")


def read_run(run: Path) -> dict:
    """What a run directory holds: training log rows, the newest test evaluation, gaps."""
    info = {"name": run.name, "path": run, "missing": [], "log": [], "test": None}
    log_file = run / "metrics.jsonl"
    if log_file.is_file():
        info["log"] = [json.loads(line) for line in log_file.read_text().splitlines() if line]
    else:
        info["missing"].append("metrics.jsonl (never trained?)")
    # Only whole-split reports at the config's beam size (`test_<step>.json`; partial or other
    # beam evaluations carry a suffix).
    evals = sorted((p for p in (run / "eval").glob("test_*.json") if p.stem[5:].isdigit()),
                   key=lambda p: int(p.stem[5:])) if (run / "eval").is_dir() else []
    if evals:
        info["test"] = json.loads(evals[-1].read_text())
    else:
        info["missing"].append("a test evaluation (run `sat evaluate --workdir "
                               f"{run} --split test`)")
    config_file = run / "config.json"
    info["config"] = json.loads(config_file.read_text()) if config_file.is_file() else {}
    return info


def training_summary(log: list[dict]) -> tuple[int, float]:
    """(last step, seconds of training) from metrics.jsonl rows."""
    train_rows = [row for row in log if "train/steps_per_second" in row]
    if not train_rows:
        return 0, 0.0
    seconds, previous = 0.0, 0
    for row in train_rows:
        seconds += (row["step"] - previous) / row["train/steps_per_second"]
        previous = row["step"]
    return previous, seconds


def metrics_table(runs: list[dict]) -> str:
    header = "| run | attention | steps | train time | " + " | ".join(COLUMNS) + " |"
    lines = [header, "|" + "---|" * (4 + len(COLUMNS))]
    for run in runs:
        steps, seconds = training_summary(run["log"])
        metrics = run["test"]["metrics"] if run["test"] else {}
        cells = [f"{metrics[c]:.1f}" if isinstance(metrics.get(c), (int, float)) else "–"
                 for c in COLUMNS]
        attention = run["config"].get("model", {}).get("attention", "?")
        lines.append(f"| {run['name']} | {attention} | {steps} | {seconds / 60:.1f} min | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(runs: list[dict], key_prefix: str, out: Path, title: str) -> Path | None:
    keys = sorted({k for run in runs for row in run["log"] for k in row
                   if k.startswith(key_prefix)})
    wanted = [k for k in keys if k.split("/", 1)[1] in ("loss", "cross_entropy", "BLEU-4", "CIDEr",
                                                         "scene_accuracy", "pointing_accuracy")]
    if not wanted:
        return None
    figure, axes = plt.subplots(1, len(wanted), figsize=(4 * len(wanted), 3.2), squeeze=False)
    for axis, key in zip(axes[0], wanted, strict=True):
        for run in runs:
            rows = [row for row in run["log"] if key in row]
            axis.plot([r["step"] for r in rows], [r[key] for r in rows], label=run["name"])
        axis.set_title(key)
        axis.set_xlabel("step")
    axes[0][0].legend()
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()  # matplotlib writes local files only; the bytes go through epath
    figure.savefig(buffer, format="png", dpi=90)
    out.write_bytes(buffer.getvalue())
    plt.close(figure)
    return out


def side_by_side_attention(runs: list[dict], out_dir: Path, count: int) -> list[Path]:
    """For the first ``count`` test images: one row per run, one panel per word."""
    if count <= 0:
        return []


    rows_per_image: dict[int, list[Path]] = {}
    for run in runs:
        if not (run["path"] / "checkpoints").is_dir():
            continue
        config, vocab, model, params, _, _ = load_for_inference(run["path"])
        batch = next(iter(pipeline.eval_batches(
            config, vocab, config.data.test_split, count, model.encoder.image_size,
            num_images=count, process_index=0, process_count=1,
        )))
        decoded = decode_images(model, {"params": params}, batch["image"],
                                beam_size=config.eval.beam_size, max_length=config.eval.max_length)
        for row in range(count):
            length = int(decoded.lengths[row])
            words = vocab.to_text(np.asarray(decoded.tokens[row])).split()
            path = out_dir / f"attention_{row}_{run['name']}.png"
            attention_overlay(batch["image"][row], words, np.asarray(decoded.alphas[row, :length]),
                              path)
            rows_per_image.setdefault(row, []).append(path)
    return [path for row in sorted(rows_per_image) for path in rows_per_image[row]]


def unique_labels(paths: list[Path]) -> list[str]:
    """Each run's folder name; runs whose names collide get parent folders joined by ``-``
    until they differ (``a/soft``, ``b/soft`` -> ``a-soft``, ``b-soft``); a run given twice
    gets ``-2``."""
    parts = [absolute(path).parts[1:] or ("root",) for path in paths]
    depth = [1] * len(parts)
    while True:
        labels = ["-".join(p[-d:]) for p, d in zip(parts, depth, strict=True)]
        clashing = [i for i, label in enumerate(labels) if depth[i] < len(parts[i]) and any(
            labels[j] == label and parts[j] != parts[i] for j in range(len(parts)))]
        if not clashing:
            break
        for i in clashing:
            depth[i] += 1
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        labels[i] = label if seen[label] == 1 else f"{label}-{seen[label]}"
    return labels


def compare_runs(run_dirs: list[str], out: str = "report", images: int = 3) -> Path:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [read_run(Path(r)) for r in run_dirs]
    for run, label in zip(runs, unique_labels([Path(r) for r in run_dirs]), strict=True):
        run["name"] = label
    for run in runs:
        if not run["path"].is_dir():
            raise MissingInput(f"{run['path']}: no such run directory")
    lines = ["# Run comparison", "", "Final test metrics (×100, from each run's newest "
             "`eval/test_*.json`):", "", metrics_table(runs), ""]
    protocols = [f"- {r['name']}: " + ", ".join(f"{k}={v}" for k, v in r["test"]["protocol"].items())
                 for r in runs if r["test"]]
    if protocols:
        lines += ["Protocols:", *protocols, ""]
    for run in runs:
        if run["missing"]:
            lines.append(f"- **{run['name']}** lacks: " + "; ".join(run["missing"]))
    loss_plot = plot_curves(runs, "train/", out_dir / "training.png", "training")
    val_plot = plot_curves(runs, "val/", out_dir / "validation.png", "validation (greedy)")
    for plot in (loss_plot, val_plot):
        if plot:
            lines += ["", f"![{plot.stem}]({plot.name})"]
    overlays = side_by_side_attention(runs, out_dir, images)
    if overlays:
        lines += ["", "## Attention on the same test images", ""]
        lines += [f"![{p.stem}]({p.name})" for p in overlays]
    report = out_dir / "README.md"
    report.write_text("\n".join(lines) + "\n")
    page = write_html(runs, out_dir)
    print(metrics_table(runs))
    print(f"wrote {report} and {page}")
    return report


def write_html(runs: list[dict], out_dir: Path) -> Path:
    """``<out>/index.html`` and the evaluated test images beside it (``images/``)."""

    for run in runs:
        run["trained_steps"], run["train_seconds"] = training_summary(run["log"])
    images: dict[int, str] = {}
    for run in runs:
        if not run["test"] or "data" not in run["config"]:
            continue
        wanted = [c["image_id"] for c in run["test"]["captions"] if c["image_id"] not in images]
        if not wanted:
            continue
        try:
            images.update(export_images(run["config"]["data"], run["test"]["protocol"]["split"],
                                        wanted, out_dir))
        except (OSError, ValueError, KeyError) as error:  # a moved or deleted dataset
            print(f"sat compare: {run['name']}: test images not exported ({error}); the page "
                  "shows captions without pictures")
    return write_report(runs, out_dir, images)
