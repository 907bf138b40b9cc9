"""Outputs of the lab: text coloured by a value per character (HTML and PNG), figures and tables.

Every file is written atomically (temporary file beside it, then a rename), so a killed run never leaves a
truncated picture or page. Figures are plain :class:`matplotlib.figure.Figure` objects rendered to files:
no pyplot, so no window and no global backend state.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from captioning.core.io import atomic_path, write_text_atomic

CMAP = "RdBu_r"  # negative blue, zero white, positive red


def figure(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Figure, Any]:
    """A new figure and its axes, like ``pyplot.subplots`` but without pyplot's global state."""
    fig = Figure(figsize=kwargs.pop("figsize", None))
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Saves ``fig`` as a PNG atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)


def _scaled(values: Sequence[float], vmax: float | None) -> np.ndarray:
    """``values`` divided by ``vmax`` (default: their largest magnitude) and clipped to [-1, 1]."""
    v = np.asarray(values, dtype=np.float64)
    vmax = float(np.abs(v).max()) if vmax is None and v.size else vmax
    return np.clip(v / (vmax or 1.0), -1.0, 1.0)


def _rgb(scaled: np.ndarray) -> np.ndarray:
    """Colours of values in [-1, 1], (N, 3) in [0, 1]; 0 is white, the extremes light enough to read text on."""
    return matplotlib.colormaps[CMAP](0.5 + 0.38 * scaled)[:, :3]


def coloured_html(text: str, values: Sequence[float], vmax: float | None = None) -> str:
    """A ``<pre>`` block of ``text`` with every character's background coloured by its value.

    Args:
        text: The characters.
        values: One value per character; positive red, negative blue.
        vmax: The magnitude that gets the full colour (default: the largest magnitude).

    Returns:
        HTML with every character escaped (``<``, ``&``, quotes) and its value as a tooltip.
    """
    if len(values) != len(text):
        raise ValueError(f"need one value per character: {len(text)} characters, {len(values)} values")
    colours = _rgb(_scaled(values, vmax))
    parts = []
    for ch, value, rgb in zip(text, values, colours):
        if ch == "\n":
            parts.append("\n")
            continue
        hexcol = "#" + "".join(f"{round(255 * c):02x}" for c in rgb)
        parts.append(f'<span style="background:{hexcol}" title="{float(value):.3f}">'
                     f"{html.escape(ch, quote=True)}</span>")
    return "<pre>" + "".join(parts) + "</pre>"


def html_page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """A standalone UTF-8 page: ``sections`` are (heading, HTML body) pairs; headings are escaped."""
    body = "\n".join(f"<h2>{html.escape(h)}</h2>\n{b}" for h, b in sections)
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title>\n<style>body{{font-family:sans-serif;max-width:72em}}"
            "pre{font-family:monospace;line-height:1.35;white-space:pre}</style></head>\n"
            f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def write_html(path: str | Path, title: str, sections: Sequence[tuple[str, str]]) -> Path:
    """Writes :func:`html_page` atomically."""
    return write_text_atomic(path, html_page(title, sections))


def _grid(text: str, values: Sequence[float], vmax: float | None, max_cols: int) -> tuple[np.ndarray, list]:
    """The per-cell colours (rows, cols, 3) of ``text`` laid out by lines, and its (row, col, char) cells."""
    scaled = _scaled(values, vmax)
    cells, row, col = [], 0, 0
    for ch, s in zip(text, scaled):
        if ch == "\n":
            row, col = row + 1, 0
            continue
        if col < max_cols:
            cells.append((row, col, ch, s))
        col += 1
    rows = row + 1
    cols = max([c for _, c, _, _ in cells], default=0) + 1
    grid = np.ones((rows, cols, 3))
    if cells:
        colours = _rgb(np.array([s for *_, s in cells]))
        for (r, c, _, _), rgb in zip(cells, colours):
            grid[r, c] = rgb
    return grid, [(r, c, ch) for r, c, ch, _ in cells]


def coloured_png(path: str | Path, text: str, values: Sequence[float], title: str = "",
                 vmax: float | None = None, max_cols: int = 100) -> Path:
    """Renders ``text`` as a character grid with each cell coloured by its value, and saves it as a PNG.

    Args:
        path: Where to write the PNG.
        text: The characters; newlines start new rows.
        values: One value per character.
        title: Figure title.
        vmax: The magnitude that gets the full colour (default: the largest magnitude).
        max_cols: Characters beyond this column are cut off.
    """
    if len(values) != len(text):
        raise ValueError(f"need one value per character: {len(text)} characters, {len(values)} values")
    grid, cells = _grid(text, values, vmax, max_cols)
    rows, cols = grid.shape[:2]
    fig, ax = figure(figsize=(max(2.0, 0.085 * cols), max(1.0, 0.17 * rows + 0.4)))
    ax.imshow(grid, aspect="auto", interpolation="nearest")
    for r, c, ch in cells:
        if not ch.isspace():
            ax.text(c, r, ch, ha="center", va="center", fontsize=7, family="monospace")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9, loc="left")
    return save_figure(fig, path)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows of equal keys as an aligned plain-text table; floats get 4 significant digits."""
    if not rows:
        return ""
    keys = list(rows[0])
    cells = [[f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths)) for cell in cells]
    return "\n".join(lines)
