"""Attention overlays like the paper's Figures 2–5: one panel per generated word.

Shape letters: H×W image, T generated words, L = G×G attention cells (row-major from the
top-left, as the CNN feature map is flattened).

Figures are drawn on a bare ``matplotlib.figure.Figure`` (Agg canvas, no display, no pyplot
state), with every panel on whole pixels so panels can be compared pixel by pixel.
"""

import io
import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from show_attend_tell.errors import InvalidInput
from show_attend_tell.paths import Path

DPI = 100
DIM = 0.2  # brightness left where attention is zero


def upsample_attention(alpha: np.ndarray, height: int, width: int) -> np.ndarray:
    """α ``[L]`` on a G×G grid -> a smooth ``[H, W]`` map (bicubic, cell centres aligned).

    The paper's figures upsample the 14×14 map ×16 and blur it; bicubic interpolation gives
    the same smooth look without a blur radius to tune.
    """
    side = math.isqrt(alpha.shape[-1])
    if side * side != alpha.shape[-1]:
        raise InvalidInput(f"attention over {alpha.shape[-1]} cells is not a square grid")
    grid = Image.fromarray(np.asarray(alpha, np.float32).reshape(side, side), mode="F")
    return np.maximum(np.asarray(grid.resize((width, height), Image.BICUBIC)), 0.0)


def attention_overlay(image: np.ndarray, words: list[str], alphas: np.ndarray, out_path,
                      locations: np.ndarray | None = None, *, columns: int = 5,
                      panel_px: int = 160, title_px: int = 24) -> Path:
    """Write a PNG grid: the image, then one panel per word with its attention over the image.

    Args:
      image: uint8 ``[H, W, 3]``.
      words: the T generated words (no ``<end>``); each panel's title.
      alphas: ``[≥T, L]``; row t is α_t of the step that emitted word t (eq. 5). Upsampled
        and scaled to its maximum, it sets each pixel's brightness: attended regions keep
        their colour, the rest is dimmed.
      out_path: where the PNG goes (parent folders are created).
      locations: optional ``[≥T]`` sampled locations s_t (hard attention, eq. 8): the panel
        then dims everything but the sampled cell and outlines it, instead of showing α.
      columns, panel_px, title_px: layout; the PNG is ``columns·panel_px`` wide and
        ``rows·(panel_px + title_px)`` high.
    Returns:
      ``out_path`` as a Path.
    """
    image = np.asarray(image)
    alphas = np.asarray(alphas, np.float32)
    height, width = image.shape[:2]
    panels = 1 + len(words)
    columns = min(columns, panels)
    rows = math.ceil(panels / columns)
    cell_px = panel_px + title_px
    fig_w, fig_h = columns * panel_px, rows * cell_px
    figure = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI)

    def panel(index: int, title: str):
        row, col = divmod(index, columns)
        bottom = fig_h - (row + 1) * cell_px
        axes = figure.add_axes((col * panel_px / fig_w, bottom / fig_h, panel_px / fig_w,
                                panel_px / fig_h))
        axes.set_axis_off()
        axes.set_title(title, fontsize=10, pad=3)
        return axes

    panel(0, "image").imshow(image, extent=(0, width, height, 0), interpolation="bilinear")
    side = math.isqrt(alphas.shape[-1])
    for t, word in enumerate(words):
        axes = panel(t + 1, word)
        if locations is None:
            weight = upsample_attention(alphas[t], height, width)
            weight = weight / max(float(weight.max()), 1e-12)
        else:
            cell_row, cell_col = divmod(int(locations[t]), side)
            cell_h, cell_w = height / side, width / side
            weight = np.zeros((height, width))
            weight[round(cell_row * cell_h):round((cell_row + 1) * cell_h),
                   round(cell_col * cell_w):round((cell_col + 1) * cell_w)] = 1.0
            axes.add_patch(Rectangle((cell_col * cell_w, cell_row * cell_h), cell_w, cell_h,
                                     fill=False, edgecolor="red", linewidth=1.5))
        # Attended pixels keep their colour, the rest fade to dark (never fully black, so
        # the scene stays readable).
        shown = image.astype(np.float32) * (DIM + (1.0 - DIM) * weight[..., None])
        axes.imshow(shown.astype(np.uint8), extent=(0, width, height, 0),
                    interpolation="bilinear")
        axes.set_xlim(0, width)
        axes.set_ylim(height, 0)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()  # matplotlib writes local files only; the bytes go through epath
    figure.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    out_path.write_bytes(buffer.getvalue())
    return out_path
