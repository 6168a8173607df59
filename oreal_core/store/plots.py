"""The report's figures: small matplotlib functions, each query result -> one PNG.

They use the object-oriented API (``Figure`` + Agg canvas), not pyplot, so they hold no
global state and work in worker threads and on machines without a display.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

TokenText = Callable[[Sequence[int]], Sequence[str]]  # token ids -> one display string per token


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _col(table: pa.Table, name: str) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in table.column(name).to_pylist()], dtype=float)


def lines_by_step(table: pa.Table, series: dict[str, str], title: str, ylabel: str, path: Path) -> Path:
    """One line per ``column -> label`` in ``series`` against ``step``."""
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    steps = _col(table, "step")
    for column, label in series.items():
        ax.plot(steps, _col(table, column), marker="o", markersize=3, label=label)
    ax.set(title=title, xlabel="step", ylabel=ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def accuracy_by_checkpoint(table: pa.Table, path: Path) -> Path:
    """pass@1 per evaluated step, one line per benchmark (EVAL_ACCURACY_BY_CHECKPOINT rows)."""
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    steps, pass1, benches = _col(table, "step"), _col(table, "pass1"), table.column("bench").to_pylist()
    for bench in sorted(set(benches)):
        mask = np.array([b == bench for b in benches])
        ax.plot(steps[mask], pass1[mask], marker="o", markersize=3, label=bench)
    ax.set(title="Evaluation pass@1 per checkpoint", xlabel="step", ylabel="pass@1", ylim=(-0.02, 1.02))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def stacked_bars_by_step(table: pa.Table, series: dict[str, str], title: str, path: Path) -> Path:
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    steps = _col(table, "step")
    bottom = np.zeros(len(steps))
    for column, label in series.items():
        values = np.nan_to_num(_col(table, column))
        ax.bar(steps, values, bottom=bottom, label=label)
        bottom += values
    ax.set(title=title, xlabel="step", ylabel="samples")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    return _save(fig, path)


@dataclass(frozen=True)
class HLine:
    """A horizontal reference line of a metrics panel, e.g. an alarm threshold."""

    y: float
    label: str
    color: str


def metrics_grid(table: pa.Table, path: Path, max_panels: int = 12, title: str | None = None,
                 lines: Mapping[str, Sequence[HLine]] | None = None,
                 marks: Mapping[str, Sequence[int]] | None = None) -> Path:
    """Small multiples of the long-format metrics table, one panel per metric name.

    ``lines`` draws reference lines per metric (alarm thresholds); ``marks`` circles the
    steps at which a metric's alarm fired."""
    names = sorted(set(table.column("name").to_pylist()))[:max_panels]
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4 * cols, 2.6 * rows + (0.4 if title else 0)))
    steps, values, all_names = _col(table, "step"), _col(table, "value"), table.column("name").to_pylist()
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        mask = np.array([n == name for n in all_names])
        ax.plot(steps[mask], values[mask], marker="o", markersize=2)
        fired = np.isin(steps[mask], list((marks or {}).get(name, ())))
        if fired.any():
            ax.plot(steps[mask][fired], values[mask][fired], "o", markersize=8, markerfacecolor="none",
                    color="tab:red", label="alarm fired")
        far = _reference_lines(ax, values[mask], (lines or {}).get(name, ()))
        ax.set_title("\n".join([name, *far]), fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _reference_lines(ax, values: np.ndarray, lines: Sequence[HLine], reach: float = 4.0) -> list[str]:
    """Draw the lines within ``reach`` times the data's scale; return the labels of the far
    ones (for the panel's title), so a threshold orders of magnitude away from the values
    (a log-prob delta of 1e-7 against 1e-3) does not flatten the curve into the axis."""
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    scale = max(hi - lo, abs(lo), abs(hi)) or 1.0
    far = []
    for line in lines:
        if lo - reach * scale <= line.y <= hi + reach * scale:
            ax.axhline(line.y, color=line.color, linestyle="--", linewidth=1, label=line.label)
        else:
            far.append(f"{line.label} (off scale)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return far


def token_weight_heatmap(examples: pa.Table, path: Path, token_text: TokenText | None = None,
                         per_row: int = 32, max_tokens: int = 256) -> Path:
    """Each chosen sample's response tokens in rows of ``per_row``, coloured by token weight.

    Positive samples use w+ (tokens the BC term leans on), negative ones w- (tokens the
    penalty concentrates on): OREAL_SPEC §2. With ``token_text`` each cell shows its token.
    """
    rows = examples.to_pylist()
    fig = Figure(figsize=(per_row * 0.42, 1.2 + sum(math.ceil(min(len(r["token_weights"]), max_tokens) / per_row) * 0.4 + 0.6
                                                   for r in rows)))
    heights = [math.ceil(min(len(r["token_weights"]), max_tokens) / per_row) for r in rows]
    grid = fig.add_gridspec(len(rows), 1, height_ratios=heights)
    image = None
    for i, row in enumerate(rows):
        weights = np.asarray(row["token_weights"][:max_tokens], dtype=float)
        padded = np.full(heights[i] * per_row, np.nan)
        padded[: len(weights)] = weights
        ax = fig.add_subplot(grid[i])
        image = ax.imshow(padded.reshape(heights[i], per_row), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        sign = "+" if row["is_positive"] else "-"
        ax.set_title(f"{row['prompt_id']}#{row['sample_idx']}  ({sign}, A={row['advantage']:.2f}, "
                     f"{len(row['token_weights'])} tokens)", fontsize=9, loc="left")
        ax.set_xticks([])
        ax.set_yticks([])
        if token_text is not None and row.get("token_ids"):
            for j, text in enumerate(token_text(row["token_ids"][: len(weights)])):
                ax.text(j % per_row, j // per_row, text, ha="center", va="center", fontsize=6, color="white")
    if image is not None:
        fig.colorbar(image, ax=fig.axes, label="token weight", shrink=0.8)
    return _save(fig, path)
