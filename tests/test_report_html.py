"""The HTML report of `sat compare`: quantised attention, the static tables, and the page driven
in headless Chromium.

The runs are hand-made (config.json, metrics.jsonl, eval/test_<step>.json) over the tiny shapes
test split, with captions built so that which images are wrong, and which differ between runs,
is known by construction.
"""

import base64
import html
import json
import re
import shutil

import numpy as np
import pytest

from show_attend_tell.compare import compare_runs
from show_attend_tell.config_loading import config_from_args, config_to_dict
from show_attend_tell.data import pipeline
from show_attend_tell.data.shapes.attributes import COLOURS
from show_attend_tell.data.vocab import tokenize
from show_attend_tell.eval_records import dequantise_alphas, image_record, quantise_alphas

CELLS = 16  # a 4×4 attention grid
METRICS = {
    "soft": {"BLEU-1": 71.25, "BLEU-2": 55.5, "BLEU-3": 43.125, "BLEU-4": 33.0, "METEOR": 27.75,
             "ROUGE-L": 60.5, "CIDEr": 88.0, "SPICE": None, "scene_accuracy": 75.0,
             "pointing_accuracy": 41.5, "attention_mass_in_box": 30.25},
    "hard": {"BLEU-1": 69.5, "BLEU-2": 56.75, "BLEU-3": 41.0, "BLEU-4": 31.5, "METEOR": 28.5,
             "ROUGE-L": 58.0, "CIDEr": 91.5, "SPICE": None, "scene_accuracy": 50.0,
             "pointing_accuracy": 38.0, "attention_mass_in_box": 22.0},
}


def test_quantised_attention_is_within_half_a_step_of_each_words_peak():
    rng = np.random.default_rng(0)
    alphas = rng.dirichlet(np.full(196, 0.3), size=11)
    alphas[3] = 0.0  # a word with no attention at all must survive the round trip
    stored = quantise_alphas(alphas)
    assert len(base64.b64decode(stored["q"])) == 11 * 196
    error = np.abs(dequantise_alphas(stored) - alphas)
    assert np.all(error <= alphas.max(axis=1, keepdims=True) / 510 + 1e-6)
    assert np.all(dequantise_alphas(stored)[3] == 0)
    stored["peak"] = stored["peak"][:-1]
    with pytest.raises(ValueError, match="expected 10 words × 196 cells"):
        dequantise_alphas(stored)


def _wrong(words: list[str]) -> list[str]:
    """The caption with the first colour word changed: the scene is named wrongly."""
    first = next(i for i, w in enumerate(words) if w in COLOURS)
    other = next(c for c in COLOURS if c != words[first])
    return [*words[:first], other, *words[first + 1:]]


@pytest.fixture(scope="module")
def fake_runs(tiny_shapes, tmp_path_factory):
    """Two runs (soft, hard) evaluated on the 12 tiny test images. Image i (file order):
    i % 4 == 0 both right and equal; 1 both right, different words; 2 only hard wrong;
    3 both wrong, the same caption."""
    root = tmp_path_factory.mktemp("runs")
    overrides = [f"data.data_dir={tiny_shapes}", "data.builder_config=tiny"]
    batch = next(iter(pipeline.eval_batches(
        config_from_args("configs/shapes.py:smoke", overrides), None, "test", 12, 64,
        process_index=0, process_count=1)))
    rng = np.random.default_rng(1)
    runs, expected = {}, {"wrong": {"soft": set(), "hard": set()}, "disagree": set()}
    for name, variant in (("soft", "smoke"), ("hard", "smoke_hard")):
        run = root / name
        (run / "eval").mkdir(parents=True)
        config = config_from_args(f"configs/shapes.py:{variant}", overrides)
        (run / "config.json").write_text(json.dumps(config_to_dict(config)))
        log = [{"step": s, "train/loss": 3.0 / s + (name == "hard"), "train/steps_per_second": 10.0}
               for s in (1, 2, 3, 4)]
        log.append({"step": 4, "val/BLEU-4": 20.0 + len(name), "val/scene_accuracy": 40.0})
        (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in log))
        records = []
        for i in range(12):
            image_id = int(batch["image_id"][i])
            words = tokenize(batch["references"][i][0])
            if name == "hard" and i % 4 == 1:
                words = tokenize(batch["references"][i][1])
                expected["disagree"].add(image_id)
            if (name == "hard" and i % 4 == 2) or i % 4 == 3:
                words = _wrong(words)
                expected["wrong"][name].add(image_id)
                if i % 4 == 2:
                    expected["disagree"].add(image_id)
            alphas = rng.dirichlet(np.full(CELLS, 0.5), size=len(words) + 1)
            locations = (rng.integers(0, CELLS, len(words) + 1) if name == "hard"
                         else alphas.argmax(axis=1))
            records.append(image_record({"image_id": image_id, "words": words, "alphas": alphas,
                                         "locations": locations, "objects": batch["objects"][i]}))
        protocol = {"dataset": "shapes", "split": "test", "images": 12, "beam_size": 3,
                    "max_length": 24, "checkpoint_step": 4, "attention": config.model.attention}
        report = {"protocol": protocol, "metrics": METRICS[name], "captions": records}
        (run / "eval" / "test_4.json").write_text(json.dumps(report))
        runs[name] = (run, report)
    for name in ("soft", "hard"):  # grounding.py must agree with the construction
        assert {r["image_id"] for r in runs[name][1]["captions"]
                if not r["scene_correct"]} == expected["wrong"][name]
    out = root / "report"
    compare_runs([str(runs["soft"][0]), str(runs["hard"][0])], str(out), images=0)
    return out, runs, expected


def test_page_holds_tables_without_javascript_and_images_beside_it(fake_runs):
    out, runs, _ = fake_runs
    page = (out / "index.html").read_text()
    assert "https://" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    table = re.search(r'<table class="metrics">.*?</table>', page, re.S).group(0)
    rows = re.findall(r'<tr><th scope="row">(\w+)</th>(.*?)</tr>', table, re.S)
    assert [name for name, _ in rows] == ["soft", "hard"]
    for name, cells in rows:
        shown = [float(v) for v in re.findall(r"<td[^>]*>(?:<strong>)?([\d.]+)", cells)]
        metrics = METRICS[name]
        assert shown == [round(v, 2) for v in metrics.values() if v is not None]
        starred = re.findall(r'<td class="best" data-value="([\d.]+)"', cells)
        for value in starred:  # starred exactly where this run holds the column maximum
            column = next(k for k, v in metrics.items() if v == float(value))
            assert metrics[column] == max(METRICS["soft"][column], METRICS["hard"][column])
        assert len(starred) == sum(
            metrics[k] is not None and metrics[k] >= METRICS["soft" if name == "hard" else "hard"][k]
            for k in metrics)
    assert "<td>REINFORCE, eq. 12" in html.unescape(page)
    for record in runs["soft"][1]["captions"]:
        image = next((out / "images").glob(f"{record['image_id']}.*"))
        assert image.stat().st_size > 100


def _driver():
    binary = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
                  None)
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip("headless browser tests need chromium and chromedriver on PATH "
                    "(Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1100", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


@pytest.fixture(scope="module")
def browser():
    driver = _driver()
    yield driver
    driver.quit()


def _visible_ids(browser) -> list[int]:
    return browser.execute_script(
        "return window.satReport.state.visible.map(i => window.satReport.data.images[i].id)")


def test_page_in_headless_chromium(fake_runs, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    out, runs, expected = fake_runs
    browser.get((out / "index.html").as_uri())
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []

    # the metrics table as the browser renders it
    for row in browser.find_elements(By.CSS_SELECTOR, "table.metrics tbody tr"):
        name = row.find_element(By.TAG_NAME, "th").text
        cells = [c.text.rstrip("★") for c in row.find_elements(By.TAG_NAME, "td")]
        assert cells == [f"{v:.2f}" for v in METRICS[name].values() if v is not None]

    # hovering a chart reads out every run's value at the nearest logged step
    chart = browser.find_element(By.CSS_SELECTOR, 'svg.chart[data-key="train/loss"]')
    ActionChains(browser).move_to_element(chart).perform()  # the middle: nearest step 2 or 3
    readout = browser.find_element(By.CLASS_NAME, "chart-readout").text
    step = int(re.search(r"soft step (\d+)", readout).group(1))
    assert step in (2, 3) and readout == (f"train/loss — soft step {step}: {3.0 / step:.4g} · "
                                          f"hard step {step}: {3.0 / step + 1:.4g}")

    # every image on one page, all cards drawn
    soft, hard = runs["soft"][1]["captions"], runs["hard"][1]["captions"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#cards .card")) == 12
    for value, wanted in (("disagree", expected["disagree"]),
                          ("wrong", expected["wrong"]["soft"] | expected["wrong"]["hard"]),
                          ("one-wrong", expected["wrong"]["soft"] ^ expected["wrong"]["hard"])):
        browser.find_element(By.CSS_SELECTOR, f'input[name="filter"][value="{value}"]').click()
        cards = browser.find_elements(By.CSS_SELECTOR, "#cards .card")
        assert {int(c.get_attribute("data-id")) for c in cards} == wanted, value
    differ = {a["image_id"] for a, b in zip(soft, hard, strict=True) if a["caption"] != b["caption"]}
    assert expected["disagree"] == differ
    browser.find_element(By.CSS_SELECTOR, 'input[name="filter"][value="all"]').click()

    # clicking a word shows that run's α for that word: canvas alpha = 255 - q
    first = soft[0]
    card = browser.find_element(By.CSS_SELECTOR, f'.card[data-id="{first["image_id"]}"]')
    for run, record in ((0, first), (1, hard[0])):
        q = np.frombuffer(base64.b64decode(record["attention"]["q"]), np.uint8).reshape(-1, CELLS)
        for word in (1, 4):
            card.find_element(By.CSS_SELECTOR, f'button.word[data-run="{run}"][data-word="{word}"]').click()
            canvas = card.find_element(By.TAG_NAME, "canvas")
            bound = (canvas.get_attribute("data-run"), canvas.get_attribute("data-word"))
            assert bound == (str(run), str(word))
            pixels = browser.execute_script(
                "const c = arguments[0]; return Array.from("
                "c.getContext('2d').getImageData(0, 0, c.width, c.height).data)", canvas)
            assert np.array_equal(np.asarray(pixels[3::4]), 255 - q[word].astype(int))
            cell = card.find_element(By.CSS_SELECTOR, ".cell")
            if run == 1:  # hard: the sampled cell outlined
                assert cell.is_displayed()
                assert int(cell.get_attribute("data-cell")) == record["locations"][word]
            else:
                assert not cell.is_displayed()
    label = card.find_element(By.CSS_SELECTOR, ".label").text
    assert label.startswith("hard: “" + hard[0]["caption"].split()[4] + "”")

    # keyboard: after clicking in the first card, j / k move to the next / previous image
    for key, row in (("j", 1), ("j", 2), ("k", 1)):
        ActionChains(browser).send_keys(key).perform()
        current = browser.find_element(By.CSS_SELECTOR, ".card.current")
        assert int(current.get_attribute("data-id")) == soft[row]["image_id"]

    # search: images where some run's caption has a word starting with each term
    search = browser.find_element(By.ID, "search")
    search.send_keys("circle")
    wanted = [a["image_id"] for a, b in zip(soft, hard, strict=True)
              if any(w.startswith("circle") for w in (a["caption"] + " " + b["caption"]).split())]
    assert 0 < len(wanted) < 12 and _visible_ids(browser) == wanted
    search.clear()
    search.send_keys("x")  # nothing starts with x ...
    assert _visible_ids(browser) == []
    search.clear()
    search.send_keys(" ")  # ... and a blank query is no query
    assert len(_visible_ids(browser)) == 12

    shot = tmp_path / "report.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_old_eval_json_and_moved_dataset_still_give_a_page(fake_runs, browser, tmp_path, capsys):
    """An eval JSON from before attention was stored, of a run whose dataset has moved: one
    line says the images are missing; the page shows the captions, words inert, no errors."""
    _, runs, _ = fake_runs
    run = tmp_path / "old"
    (run / "eval").mkdir(parents=True)
    config = json.loads((runs["soft"][0] / "config.json").read_text())
    config["data"]["data_dir"] = str(tmp_path / "moved")
    (run / "config.json").write_text(json.dumps(config))
    report = dict(runs["soft"][1])
    report["captions"] = [{"image_id": r["image_id"], "caption": r["caption"]} for r in report["captions"]]
    (run / "eval" / "test_4.json").write_text(json.dumps(report))
    compare_runs([str(run)], str(tmp_path / "report"), images=0)
    printed = [line for line in capsys.readouterr().out.splitlines() if "not exported" in line]
    assert len(printed) == 1 and "old: " in printed[0] and "is not built in" in printed[0]

    from selenium.webdriver.common.by import By

    browser.get((tmp_path / "report" / "index.html").as_uri())
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    cards = browser.find_elements(By.CSS_SELECTOR, "#cards .card")
    assert len(cards) == 12 and "not exported" in cards[0].find_element(By.CLASS_NAME, "noimage").text
    words = cards[0].find_elements(By.CSS_SELECTOR, "button.word")
    assert [w.text for w in words] == report["captions"][0]["caption"].split()
    assert all(not w.is_enabled() for w in words)
    wrong = browser.find_element(By.CSS_SELECTOR, 'input[name="filter"][value="wrong"]')
    assert not wrong.is_enabled()  # no objects stored: nothing to grade against


def test_a_thousand_images_are_paged(browser, tmp_path):
    """1000 images × 2 runs: only one page of cards is in the DOM; keys and buttons page on."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from show_attend_tell.report_html import write_report

    rng = np.random.default_rng(2)
    runs = []
    for name in ("a", "b"):
        captions = []
        for image_id in range(1000):
            words = ["a", "small", "red", "circle"] if (image_id % 7 or name == "a") else ["a", "cat"]
            captions.append(image_record({
                "image_id": image_id, "words": words, "objects": None,
                "alphas": rng.dirichlet(np.ones(CELLS), len(words)), "locations": np.zeros(len(words))}))
        runs.append({"name": name, "path": tmp_path / name, "missing": [], "log": [],
                     "config": {"model": {"attention": "soft"}},
                     "test": {"protocol": {"split": "test"}, "metrics": {}, "captions": captions}})
    browser.get(write_report(runs, tmp_path, {}).as_uri())

    def positions():
        cards = browser.find_elements(By.CSS_SELECTOR, ".card")
        return [int(c.get_attribute("data-position")) for c in cards]

    assert positions() == list(range(24))
    browser.find_element(By.ID, "next").click()
    assert positions() == list(range(24, 48))
    ActionChains(browser).send_keys(Keys.PAGE_UP).perform()
    assert positions() == list(range(24))
    for _ in range(25):  # j past the last card of a page turns the page
        ActionChains(browser).send_keys("j").perform()
    assert positions() == list(range(24, 48))
    assert browser.find_element(By.CSS_SELECTOR, ".card.current").get_attribute("data-position") == "24"
    browser.find_element(By.CSS_SELECTOR, 'input[name="filter"][value="disagree"]').click()
    assert browser.find_element(By.ID, "count").text == f"1–24 of {len(range(0, 1000, 7))} images"
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_curves_are_svg_with_every_point_titled():
    from show_attend_tell.report_html import curve_svg

    runs = [{"name": "a", "log": [{"step": 10, "val/CIDEr": 1.5}, {"step": 30, "val/CIDEr": 2.25},
                                  {"step": 30, "train/loss": 9.0}]},
            {"name": "b", "log": [{"step": 20, "val/CIDEr": float("nan")}, {"step": 20, "val/CIDEr": 4.0}]}]
    svg = curve_svg(runs, "val/CIDEr")
    assert re.findall(r"<title>(.*?)</title>", svg) == ["a step 10: 1.5", "a step 30: 2.25", "b step 20: 4"]
    cx = [float(v) for v in re.findall(r'<circle cx="([\d.]+)"', svg)]
    assert cx[0] < cx[2] < cx[1]  # x is the step
    assert [int(t) for t in re.findall(r'text-anchor="middle">(\d+)<', svg)] == [10, 20, 30]
    assert curve_svg(runs, "train/loss") is None  # one step: nothing to draw
    assert curve_svg(runs, "val/BLEU-4") is None
