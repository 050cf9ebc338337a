"""PNG plots of evaluation results and training curves (matplotlib, lazily, headless)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from .common import length_label

logger = logging.getLogger(__name__)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("Plots need matplotlib: pip install 'e2llm-integrations[train]'") from err
    return plt


def niah_heatmap(
    grid: dict[str, dict[str, float]],
    lengths: list[int],
    depths: list[float],
    title: str,
    path: str | Path,
) -> Path:
    """Depth (rows) x length (columns) heat-map of mean scores; grey where not run.

    Args:
        grid: ``{str(length): {str(depth): mean score}}`` for one system.
        lengths: Column order.
        depths: Row order (fractions).
        title: Figure title (system and model).
        path: Output PNG.
    """
    plt = _pyplot()
    values = [[grid.get(str(n), {}).get(str(d), math.nan) for n in lengths] for d in depths]
    fig, ax = plt.subplots(figsize=(1.1 * len(lengths) + 2.5, 0.55 * len(depths) + 1.8))
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="#d0d0d0")
    image = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(lengths)), [length_label(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{d * 100:g}%" for d in depths])
    ax.set_xlabel("context length (decoder tokens)")
    ax.set_ylabel("needle depth")
    for r, row in enumerate(values):
        for c, v in enumerate(row):
            ax.text(c, r, "n/a" if math.isnan(v) else f"{v:.2f}", ha="center", va="center",
                    fontsize=8)  # fmt: skip
    fig.colorbar(image, ax=ax, label="needle found (mean)")
    ax.set_title(title, fontsize=9)
    return _save(fig, plt, path)


def bench_plot(rows: list[dict[str, Any]], title: str, path: str | Path) -> Path:
    """TTFT, decode tokens/s and peak memory against context length, one line per system."""
    plt = _pyplot()
    panels = (
        ("ttft_s", "time to first token (s)", True),
        ("decode_tok_s", "decode tokens / s", False),
        ("peak_mb", "peak extra memory (MiB)", True),
    )
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    systems = sorted({r["system"] for r in rows})
    lengths = sorted({r["length"] for r in rows})
    for ax, (key, label, log) in zip(axes, panels, strict=True):
        for system in systems:
            pts = sorted(
                (r["length"], r[key]) for r in rows
                if r["system"] == system and r.get(key) is not None
            )  # fmt: skip
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=system)
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, [length_label(n) for n in lengths])
        ax.minorticks_off()
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("context length (decoder tokens)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    logger.info("Wrote %s", out)
    return out


def quality_cost_plot(points: dict[str, list[tuple[str, float, float]]], path: str | Path) -> Path:
    """Score against decoder input positions, one panel per metric.

    Args:
        points: ``{metric: [(system, mean positions, mean score), ...]}``.
        path: PNG to write.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(points), figsize=(5.5 * len(points), 4), squeeze=False)
    for ax, (metric, rows) in zip(axes[0], points.items(), strict=True):
        curve = sorted((p, s, n) for n, p, s in rows if n.startswith("e2llm@"))
        if curve:
            ax.plot([c[0] for c in curve], [c[1] for c in curve], "o-", label="E2LLM, K expanded")
            for p, s, n in curve:
                ax.annotate(n.split("@")[1], (p, s), textcoords="offset points", xytext=(4, 4))
        for name, p, s in rows:
            if not name.startswith("e2llm@"):
                marker = "*" if name == "e2llm" else ("s" if name == "full" else "^")
                ax.plot([p], [s], marker, ms=9, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("decoder input positions (mean)")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, plt, path)


CURVE_NAME = "loss_curve.png"
"""File name of the loss curves in a run folder (``e2llm train`` writes it)."""


def plot_losses(out_dir: str | Path) -> Path:
    """Write the loss curves of a run (train per objective, validation) to ``loss_curve.png``."""
    from ..core.training.run import read_metrics

    plt = _pyplot()
    records = read_metrics(out_dir)
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("loss_recon", "loss_qa", "val_loss_recon", "val_loss_qa"):
        pts = [(r["step"], r[key]) for r in records if key in r]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, "o-" if key.startswith("val") else "-", label=key, alpha=0.8, ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, plt, Path(out_dir) / CURVE_NAME)
