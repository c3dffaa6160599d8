"""Attention overlays: PNG size, one panel per word, panels differ exactly where α differs."""

import numpy as np
from PIL import Image

from show_attend_tell.visualize import attention_overlay, upsample_attention

PANEL, TITLE = 96, 20


def scene():
    """A 64×64 grey gradient image and one-hot α on an 8×8 grid."""
    ramp = np.linspace(60, 200, 64, dtype=np.float32)
    image = np.repeat((ramp[:, None] + ramp[None, :])[..., None] / 2, 3, axis=2).astype(np.uint8)
    alphas = np.zeros((3, 64), np.float32)
    alphas[[0, 1, 2], [0, 0, 63]] = 1.0  # words 1 and 2 look top-left, word 3 bottom-right
    return image, alphas


def panels(path, columns):
    """The panel pixels (title bands cut off), in reading order."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    rows = pixels.shape[0] // (PANEL + TITLE)
    return [pixels[r * (PANEL + TITLE) + TITLE:(r + 1) * (PANEL + TITLE), c * PANEL:(c + 1) * PANEL]
            for r in range(rows) for c in range(columns)]


def test_overlay_size_and_panels_follow_attention(tmp_path):
    image, alphas = scene()
    path = attention_overlay(image, ["a", "a", "a"], alphas, tmp_path / "figs" / "overlay.png",
                             columns=4, panel_px=PANEL, title_px=TITLE)
    assert Image.open(path).size == (4 * PANEL, PANEL + TITLE)
    original, first, same, other = panels(path, 4)
    np.testing.assert_array_equal(first, same)  # same word, same α -> same pixels
    assert np.abs(first - other).sum() > 0
    assert np.abs(first - original).sum() > 0
    # Attended pixels stay bright: top-left for the first word, bottom-right for the last.
    quarter = PANEL // 4
    assert first[:quarter, :quarter].mean() > other[:quarter, :quarter].mean()
    assert other[-quarter:, -quarter:].mean() > first[-quarter:, -quarter:].mean()


def test_hard_locations_highlight_the_sampled_cell_and_rows_wrap(tmp_path):
    image, alphas = scene()
    words = ["w"] * 6
    path = attention_overlay(image, words, np.repeat(alphas[:1], 6, axis=0), tmp_path / "hard.png",
                             locations=np.array([0, 0, 63, 0, 0, 0]), columns=4,
                             panel_px=PANEL, title_px=TITLE)
    assert Image.open(path).size == (4 * PANEL, 2 * (PANEL + TITLE))
    cells = panels(path, 4)
    np.testing.assert_array_equal(cells[1], cells[2])
    assert np.abs(cells[1] - cells[3]).sum() > 0


def test_upsampling_is_smooth_and_keeps_the_peak_in_place():
    alpha = np.zeros(16, np.float32)
    alpha[5] = 1.0  # row 1, col 1 of a 4×4 grid
    glow = upsample_attention(alpha, 64, 64)
    assert glow.shape == (64, 64) and glow.min() >= 0
    peak = np.unravel_index(np.argmax(glow), glow.shape)
    assert 16 <= peak[0] < 32 and 16 <= peak[1] < 32
    assert len(np.unique(np.round(glow, 4))) > 16  # interpolated, not blocky
