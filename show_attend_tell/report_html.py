"""``index.html`` of ``sat compare``: one offline page to explore where runs differ.

Static HTML (readable without JavaScript): each run's configuration, the test metrics with the
best value per column marked, and training / validation curves as inline SVG (hover a point
for its value). The gallery of test images is rendered by the page's own script
(``report_assets/report.js``, no framework, no network) from a JSON block holding, per image and
run, the caption, its correctness marks (shapes) and the quantised attention of each word
(:mod:`show_attend_tell.eval_records`).
"""

import html
import json
import math
from collections import Counter
from importlib import resources

from show_attend_tell.paths import Path

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr",
           "scene_accuracy", "pointing_accuracy", "attention_mass_in_box")
CURVE_KEYS = ("train/loss", "train/cross_entropy", *(f"val/{m}" for m in METRICS))
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _asset(name: str) -> str:
    return resources.files("show_attend_tell").joinpath("report_assets", name).read_text("utf-8")


def objective(config: dict) -> str:
    """The training objective in a few words (eq. 14 for soft, eq. 12 for hard attention)."""
    model, train = config.get("model", {}), config.get("train", {})
    if model.get("attention") == "hard":
        return (f"REINFORCE, eq. 12 (reward {train.get('reward', '?')}, "
                f"λ_r={train.get('reinforce_weight', '?')}, λ_e={train.get('entropy_weight', '?')})")
    if model.get("attention") == "soft":
        return f"cross-entropy + λ·eq. 14 (λ={train.get('doubly_stochastic_weight', '?')})"
    return "?"


def run_essentials(run: dict) -> dict:
    """The header row of one run: what was trained and which checkpoint was evaluated."""
    config, protocol = run["config"], (run["test"] or {}).get("protocol", {})
    encoder = config.get("model", {}).get("encoder", {})
    checkpoint = protocol.get("checkpoint", protocol.get("checkpoint_step"))
    return {
        "run": run["name"],
        "attention": config.get("model", {}).get("attention", "?"),
        "objective": objective(config),
        "encoder": encoder.get("name", "?"),
        "dataset": "/".join(str(v) for v in (config.get("data", {}).get("name"),
                                             config.get("data", {}).get("builder_config")) if v),
        "steps": run.get("trained_steps", 0),
        "train time": f"{run.get('train_seconds', 0.0) / 60:.1f} min",
        "checkpoint": "–" if checkpoint is None else checkpoint,
        "test images": protocol.get("images", "–"),
        "beam": protocol.get("beam_size", "–"),
    }


def _table(headers: list[str], rows: list[list[str]], caption: str, cls: str) -> str:
    head = "".join(f'<th scope="col">{h}</th>' for h in headers)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return (f'<table class="{cls}"><caption>{caption}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def config_table(runs: list[dict]) -> str:
    rows = [run_essentials(run) for run in runs]
    headers = list(rows[0])
    cells = [[f'<th scope="row">{_esc(r["run"])}</th>'] + [f"<td>{_esc(r[h])}</td>" for h in headers[1:]]
             for r in rows]
    return _table([_esc(h) for h in headers], cells, "Runs", "runs")


def metrics_table(runs: list[dict]) -> str:
    """Test metrics (×100) per run; the best value of each column (ties included) is bold
    and starred when at least two runs have one."""
    values = [(run["test"] or {}).get("metrics", {}) for run in runs]
    columns = [m for m in METRICS if any(isinstance(v.get(m), (int, float)) for v in values)]
    best = {}
    for column in columns:
        present = [v[column] for v in values if isinstance(v.get(column), (int, float))]
        if len(present) >= 2:
            best[column] = round(max(present), 2)
    rows = []
    for run, metrics in zip(runs, values, strict=True):
        row = [f'<th scope="row">{_esc(run["name"])}</th>']
        for column in columns:
            value = metrics.get(column)
            if not isinstance(value, (int, float)):
                row.append('<td class="na">–</td>')
            elif round(value, 2) == best.get(column):
                row.append(f'<td class="best" data-value="{value!r}"><strong>{value:.2f}</strong>'
                           '<span class="star" aria-label="best">★</span></td>')
            else:
                row.append(f'<td data-value="{value!r}">{value:.2f}</td>')
        rows.append(row)
    return _table(["run", *(_esc(c) for c in columns)], rows,
                  "Test metrics (×100; ★ best per column)", "metrics")


def _ticks(low: float, high: float, count: int = 4, integer: bool = False) -> list[float]:
    """Round values in [low, high], at most about ``count`` + 1 of them (whole when ``integer``)."""
    if high <= low:
        return [low]
    step = 10 ** math.floor(math.log10((high - low) / count))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= count:
            step *= factor
            break
    if integer:
        step = max(1, round(step))
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _number(value: float) -> str:
    return f"{value:.4g}"


def curve_svg(runs: list[dict], key: str, width: int = 290, height: int = 170) -> str | None:
    """One chart of ``key`` against step, a line per run; every point carries a <title>.
    None when the runs logged ``key`` at fewer than two steps (no curve to draw)."""
    series = []
    for index, run in enumerate(runs):
        points = [(row["step"], row[key]) for row in run["log"]
                  if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])]
        if points:
            series.append((index, run["name"], points))
    xs = [x for _, _, pts in series for x, _ in pts]
    if len(set(xs)) < 2:
        return None
    ys = [y for _, _, pts in series for _, y in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 <= y0:
        y0, y1 = y0 - 1, y1 + 1
    left, right, top, bottom = 46, 18, 24, 26
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x):
        return left + (x - x0) / (x1 - x0) * plot_w

    def sy(y):
        return top + (1 - (y - y0) / (y1 - y0)) * plot_h

    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" data-key="{_esc(key)}" aria-label="{_esc(key)} against step">',
             f'<text class="title" x="{left}" y="14">{_esc(key)}</text>',
             f'<rect class="plot" x="{left}" y="{top}" width="{plot_w}" height="{plot_h}"/>']
    for tick in _ticks(y0, y1):
        parts.append(f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{sy(tick):.1f}" '
                     f'y2="{sy(tick):.1f}"/><text class="tick" x="{left - 4}" y="{sy(tick) + 3:.1f}" '
                     f'text-anchor="end">{_number(tick)}</text>')
    for tick in _ticks(x0, x1, 3, integer=True):
        parts.append(f'<text class="tick" x="{sx(tick):.1f}" y="{height - 8}" '
                     f'text-anchor="middle">{int(tick)}</text>')
    for index, name, points in series:
        colour = PALETTE[index % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
        parts.append(f'<g class="series" data-run="{index}" stroke="{colour}" fill="{colour}">'
                     f'<polyline fill="none" points="{path}"/>')
        parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" data-step="{x}" '
                  f'data-value="{y!r}"><title>{_esc(name)} step {x}: {_number(y)}</title></circle>'
                  for x, y in points]
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _marks(record: dict) -> tuple[list[str], list[str]]:
    """Per word of a shapes caption its mark, and the scene's objects the caption misses.

    Marks: ``hit`` (names an object of the scene, attention on it), ``off`` (names one,
    attention elsewhere), ``ok`` (names one of several alike; pointing not scored), ``bad``
    (names nothing in the scene, or an object more often than it occurs), ``""`` otherwise.
    """
    words = record["caption"].split()
    marks = [""] * len(words)
    remaining = Counter(" ".join((o["size"], o["colour"], o["shape"])) for o in record["objects"])
    for phrase in record.get("phrases", []):
        if remaining[phrase["phrase"]] > 0:
            remaining[phrase["phrase"]] -= 1
            mark = {"scored": "hit" if phrase["hit"] else "off"}.get(phrase["status"], "ok")
        else:
            mark = "bad"
        marks[phrase["start"]:phrase["start"] + 3] = [mark] * 3
    return marks, sorted(remaining.elements())


def gallery_data(runs: list[dict], images: dict[int, str]) -> dict:
    """The JSON the page's script renders: runs, and per test image each run's caption,
    marks, correctness and quantised attention (None where a run did not caption it)."""
    evaluated = [run for run in runs if run["test"]]
    by_run = [{entry["image_id"]: entry for entry in run["test"]["captions"]} for run in evaluated]
    order = list(dict.fromkeys(i for table in by_run for i in table))
    graded = any("scene_correct" in entry for table in by_run for entry in table.values())
    items = []
    for image_id in order:
        entries, objects = [], None
        for table in by_run:
            record = table.get(image_id)
            if record is None:
                entries.append(None)
                continue
            entry = {"w": record["caption"].split(), "ok": record.get("scene_correct")}
            if "attention" in record:
                entry["a"] = record["attention"]
                entry["loc"] = record.get("locations", [])
            if "objects" in record:
                entry["m"], entry["missed"] = _marks(record)
                objects = [" ".join((o["size"], o["colour"], o["shape"])) for o in record["objects"]]
            entries.append(entry)
        items.append({"id": image_id, "src": images.get(image_id), "objects": objects, "runs": entries})
    return {
        "runs": [{"name": run["name"], "attention": run["config"].get("model", {}).get("attention", "?"),
                  "colour": PALETTE[runs.index(run) % len(PALETTE)]} for run in evaluated],
        "graded": graded,
        "images": items,
    }


def _script_json(value) -> str:
    """JSON safe inside a <script> element (no "</" can close it early)."""
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def render(runs: list[dict], images: dict[int, str]) -> str:
    names = ", ".join(run["name"] for run in runs)
    missing = "".join(f"<li><strong>{_esc(run['name'])}</strong> lacks: "
                      f"{_esc('; '.join(run['missing']))}</li>" for run in runs if run["missing"])
    charts = [svg for key in CURVE_KEYS if (svg := curve_svg(runs, key))]
    legend = "".join(f'<li><span class="swatch" style="background:{PALETTE[i % len(PALETTE)]}"></span>'
                     f"{_esc(run['name'])}</li>" for i, run in enumerate(runs))
    data = gallery_data(runs, images)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sat compare: {_esc(names)}</title>
<link rel="icon" href="data:,">
<style>{_asset("report.css")}</style>
</head>
<body>
<header>
<h1>Run comparison: {_esc(names)}</h1>
{config_table(runs)}
{metrics_table(runs)}
{f'<ul class="missing">{missing}</ul>' if missing else ''}
</header>
<main>
<section id="curves" aria-labelledby="curves-title">
<h2 id="curves-title">Training and validation curves</h2>
<ul class="legend">{legend}</ul>
<div class="charts">{"".join(charts) or "<p>No training log (metrics.jsonl) in these runs.</p>"}</div>
<p class="chart-readout" aria-live="polite"></p>
</section>
<section id="gallery" aria-labelledby="gallery-title">
<h2 id="gallery-title">Test images ({len(data["images"])})</h2>
<noscript><p>The gallery needs JavaScript; the tables above do not.</p></noscript>
<div id="controls" hidden>
<fieldset id="filters"><legend>Show</legend></fieldset>
<label>Search words <input id="search" type="search" placeholder="e.g. red circle" autocomplete="off"></label>
<span id="count" aria-live="polite"></span>
<nav id="pager" aria-label="pages"><button id="prev" type="button">◀ prev</button>
<span id="page"></span><button id="next" type="button">next ▶</button></nav>
<p class="keys">Keys: <kbd>j</kbd>/<kbd>k</kbd> next/previous image, <kbd>←</kbd>/<kbd>→</kbd>
previous/next word, <kbd>PgDn</kbd>/<kbd>PgUp</kbd> pages, <kbd>/</kbd> search, <kbd>Esc</kbd> unpin.
Hover or click a word to see where that run looked.</p>
</div>
<div id="cards"></div>
</section>
</main>
<script type="application/json" id="report-data">{_script_json(data)}</script>
<script>{_asset("report.js")}</script>
</body>
</html>
"""


def write_report(runs: list[dict], out_dir: Path, images: dict[int, str]) -> Path:
    """Write ``out_dir/index.html``; ``runs`` as :func:`show_attend_tell.compare.read_run`
    returns them (plus ``trained_steps`` and ``train_seconds``), ``images`` {image_id: path
    relative to ``out_dir``}."""
    page = out_dir / "index.html"
    page.write_text(render(runs, images), encoding="utf-8")
    return page
