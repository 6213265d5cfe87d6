"""Figures: timelines of traces (measured or simulated) and sweeps against theory.

    labs.plots.timeline(run.trace, title="measured")              # one row per rank, F blue, B orange, W green
    labs.plots.compare(run.trace, run.ideal)                       # measured above simulated, same time axis
    labs.plots.sweep(ms, measured, theory, xlabel="micro-batches M")

Boxes are labelled with the micro-batch (and ``.c`` for the model chunk when a rank holds several); the white gaps
between boxes are the bubble. Everything returns the matplotlib Figure, so notebooks can show or save it.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

from .trace import Trace

COLOURS = {"F": "#4C72B0", "B": "#DD8452", "W": "#55A868"}


def draw_timeline(ax, trace: Trace, title: str = "", time_unit: str = "ms", x_max: float | None = None) -> None:
    """Draw ``trace`` on ``ax``: rank 0 at the top, time to the right."""
    scale = 1000.0 if time_unit == "ms" else 1.0
    ranks = trace.world_size
    span = (x_max if x_max is not None else trace.step_time) * scale
    several_chunks = len({e.action.stage for events in trace.events for e in events}) > ranks
    for rank, events in enumerate(trace.events):
        for e in events:
            start, width = e.start * scale, e.duration * scale
            ax.broken_barh([(start, width)], (rank - 0.4, 0.8), facecolors=COLOURS[e.action.kind],
                           edgecolors="white", linewidth=0.5)
            label = f"{e.action.microbatch}" + (f".{e.action.stage // ranks}" if several_chunks else "")
            if width > 0.006 * span * len(label):  # label only boxes wide enough to hold it
                ax.text(start + width / 2, rank, label, ha="center", va="center", color="white",
                        fontsize=7 if len(events) > 24 else 8, clip_on=True)
    ax.set_yticks(range(ranks), [f"rank {r}" for r in range(ranks)])
    ax.set_ylim(ranks - 0.5, -0.5)
    ax.set_xlim(0, span)
    ax.set_xlabel(f"time ({time_unit})" if time_unit else "time")
    bubble = f"idle {trace.idle_fraction:.0%}"
    ax.set_title(f"{title} — {bubble}" if title else bubble, fontsize=10, loc="left")
    split = any(e.action.kind == "W" for events in trace.events for e in events)
    kinds = ("F", "B", "W") if split else ("F", "B")
    names = {"F": "forward", "B": "backward (input grad)" if split else "backward", "W": "weight grad"}
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[k]) for k in kinds]
    ax.legend(handles, [names[k] for k in kinds], loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(kinds),
              fontsize=7, frameon=False, borderaxespad=0.2)


def timeline(trace: Trace, title: str = "", time_unit: str = "ms", width: float = 10.0):
    """One trace as a figure."""
    fig, ax = plt.subplots(figsize=(width, 0.45 * trace.world_size + 1.0))
    draw_timeline(ax, trace, title, time_unit)
    fig.tight_layout()
    return fig


def compare(measured: Trace, simulated: Trace, titles=("measured (real ranks)", "simulated (same costs, free link)"),
            time_unit: str = "ms", width: float = 10.0):
    """Measured timeline above the simulated one, on one time axis, so gaps line up (or visibly don't)."""
    x_max = max(measured.step_time, simulated.step_time)
    rows = measured.world_size
    fig, axes = plt.subplots(2, 1, figsize=(width, 0.9 * rows + 2.0), sharex=True)
    draw_timeline(axes[0], measured, titles[0], time_unit, x_max)
    draw_timeline(axes[1], simulated, titles[1], time_unit, x_max)
    axes[0].set_xlabel("")
    fig.tight_layout()
    return fig


def sweep(xs, measured, theory, xlabel: str, ylabel: str = "idle fraction of the step",
          theory_label: str = "theory", measured_label: str = "measured", logx: bool = True):
    """Measured points against a theory curve."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(xs, theory, "-", color="grey", label=theory_label)
    ax.plot(xs, measured, "o", color=COLOURS["F"], label=measured_label)
    if logx:
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(xs), [str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
