"""The report's figures: matplotlib (Agg) drawn to PNG and inlined as base64, so the page needs no files."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

POOL, SELECTED = "#9aa5b1", "#d9480f"
MAX_POINTS = 200_000
"""Values drawn per histogram; larger arrays are sampled (seeded). Counts elsewhere stay exact."""


def _png(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _sample(values: np.ndarray, seed: int = 0) -> np.ndarray:
    values = values[np.isfinite(values)]
    if len(values) > MAX_POINTS:
        values = np.random.default_rng(seed).choice(values, MAX_POINTS, replace=False)
    return values


def funnel(stages: list[tuple[str, int]]) -> str:
    figure, axis = plt.subplots(figsize=(7.5, 0.45 * len(stages) + 0.8))
    names = [name for name, _ in stages][::-1]
    counts = [count for _, count in stages][::-1]
    bars = axis.barh(names, counts, color=[SELECTED if n == "selected" else POOL for n in names])
    axis.bar_label(bars, labels=[f"{c:,}" for c in counts], padding=3, fontsize=9)
    axis.set_xlim(0, max(max(counts), 1) * 1.18)
    axis.spines[["top", "right"]].set_visible(False)
    axis.set_xlabel("records")
    return _png(figure)


def distribution(title: str, pool: np.ndarray, selected: np.ndarray, log: bool = False, discrete: bool = False) -> str:
    """Pool and selection as overlaid density histograms, with their medians in the legend."""
    pool, selected = _sample(np.asarray(pool, dtype=np.float64)), np.asarray(selected, dtype=np.float64)
    selected = selected[np.isfinite(selected)]
    figure, axis = plt.subplots(figsize=(5.2, 3.0))
    both = np.concatenate([pool, selected]) if len(selected) else pool
    if log:
        both = both[both > 0]
    if len(both) == 0:
        axis.text(0.5, 0.5, "no values", ha="center", va="center", transform=axis.transAxes)
        return _png(figure)
    if discrete:
        bins = np.arange(both.min() - 0.5, min(both.max(), both.min() + 40) + 1.5)
    elif log:
        low = max(both.min(), 1)
        bins = np.geomspace(low, max(both.max(), 2 * low), 40)  # one value (a one-record pool) still spans
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:,.0f}"))
        axis.xaxis.set_minor_formatter(ticker.NullFormatter())
    else:
        bins = np.linspace(both.min(), both.max() if both.max() > both.min() else both.min() + 1, 40)
    for values, color, name in ((pool, POOL, "pool"), (selected, SELECTED, "selected")):
        if len(values):
            axis.hist(values, bins=bins, density=True, alpha=0.55, color=color,
                      label=f"{name} (median {np.median(values):,.3g})")
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8, frameon=False)
    axis.spines[["top", "right"]].set_visible(False)
    axis.set_yticks([])
    return _png(figure)


def threshold_curve(points: list[tuple[float, int, bool]], size: int, chosen: float) -> str:
    """Candidates examined to reach `size` for each threshold; open markers where the walk was capped."""
    figure, axis = plt.subplots(figsize=(6.0, 3.2))
    taus = [tau for tau, _, _ in points]
    examined = [n for _, n, _ in points]
    axis.plot(taus, examined, color=SELECTED, marker="o")
    for tau, n, reached in points:
        if not reached:
            axis.plot([tau], [n], marker="o", markerfacecolor="white", color=SELECTED)
    axis.axvline(chosen, color=POOL, linestyle="--", label=f"this run: τ = {chosen}")
    axis.set_xlabel("threshold τ (cosine)")
    axis.set_ylabel(f"examined to select {size:,}")
    axis.legend(fontsize=8, frameon=False)
    axis.spines[["top", "right"]].set_visible(False)
    return _png(figure)


def probe_bars(classes: list[str], selector: list[float | None], random: list[float | None], name: str) -> str:
    """Per injected class, its share ratio for the probed selector and for random, side by side (1 = kept at
    its pool share, 0 = never kept)."""
    figure, axis = plt.subplots(figsize=(7.0, 0.42 * len(classes) + 1.0))
    positions = np.arange(len(classes))[::-1]
    for offset, values, color, label in ((0.2, selector, SELECTED, name), (-0.2, random, POOL, "random")):
        heights = [0.0 if v is None else v for v in values]
        bars = axis.barh(positions + offset, heights, height=0.38, color=color, label=label)
        axis.bar_label(bars, labels=["–" if v is None else f"{v:.2f}" for v in values], padding=3, fontsize=8)
    axis.axvline(1.0, color="#52606d", linewidth=0.8, linestyle="--")
    axis.set_yticks(positions, classes)
    axis.set_xlim(0, max([1.3, *[(v or 0) * 1.15 for v in [*selector, *random]]]))
    axis.set_xlabel("share in selection / share in pool")
    axis.legend(fontsize=8, frameon=False, loc="lower right")
    axis.spines[["top", "right"]].set_visible(False)
    return _png(figure)
