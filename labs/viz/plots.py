"""Figures: timelines of traces (measured or simulated) and sweeps against theory.

    timeline(run.trace, title="measured")          # one row per rank: F blue, I teal, W green, B orange
    compare(run.trace, run.simulated)              # measured above simulated, same time axis
    sweep(ms, measured, theory, xlabel="micro-batches M")
    draw_collectives(ax, run.trace)                # all-reduces (tensor/data parallel) over a timeline

Boxes are labelled with the micro-batch, or, when a rank holds several model chunks, with the whole action in
PyTorch's notation (``4F3``: stage 4, forward, micro-batch 3) and shaded by chunk (darkest: chunk 0); a label that
does not fit its box is left out. The white gaps between boxes are the bubble. Everything returns the matplotlib Figure, so notebooks can show or save it.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

from ..schedules import KINDS
from ..timeline.trace import Trace

__all__ = ["COLOURS", "KIND_NAMES", "chunk_colour", "compare", "draw_collectives", "draw_timeline", "sweep",
           "timeline"]

# PyTorch's four compute kinds (labs.schedules.actions); I and W in the teal and green of its schedule visualiser
COLOURS = {"F": "#4C72B0", "I": "#2A9D8F", "W": "#55A868", "B": "#DD8452"}
KIND_NAMES = {"F": "forward F", "I": "input grad I", "W": "weight grad W", "B": "backward B"}
LEGEND_POINTS = 8


def draw_timeline(ax, trace: Trace, title: str = "", time_unit: str = "ms", x_max_s: float | None = None) -> None:
    """Draw ``trace`` on ``ax``: rank 0 at the top, time to the right (in ``time_unit``, up to ``x_max_s`` seconds:
    default the step time)."""
    scale = 1000.0 if time_unit == "ms" else 1.0
    ranks = trace.world_size
    span = (x_max_s if x_max_s is not None else trace.step_time_s) * scale
    several_chunks = len({e.action.stage for events in trace.events for e in events}) > ranks
    chunks = max(e.action.stage for events in trace.events for e in events) // ranks + 1
    points_per_unit = _points_per_unit(ax, span)
    for rank, events in enumerate(trace.events):
        for e in events:
            start, width = e.start_s * scale, e.duration_s * scale
            colour = chunk_colour(e.action.kind, e.action.stage // ranks, chunks) if several_chunks else None
            ax.broken_barh([(start, width)], (rank - 0.4, 0.8), facecolors=colour or COLOURS[e.action.kind],
                           edgecolors="white", linewidth=0.5)
            # several chunks per rank: the action in PyTorch's notation (4F3: stage 4, forward, micro-batch 3)
            label = str(e.action) if several_chunks else f"{e.action.microbatch}"
            fits = [size for size in ((7, 6.5) if len(events) > 24 else (8, 7))
                    if width * points_per_unit > 0.64 * size * len(label) + 2]  # a digit is ~0.64 em wide
            if fits:  # label only boxes wide enough to hold it
                dark_text = colour is not None and sum(colour) / 3 > 0.7  # light shades of later chunks
                ax.text(start + width / 2, rank, label, ha="center", va="center", fontsize=fits[0], clip_on=True,
                        color="#222222" if dark_text else "white")
    if several_chunks:  # added as an artist, so the forward/backward legend below keeps its own place
        ax.add_artist(_chunk_legend(ax, chunks, ranks, _kinds(trace))).set_clip_on(False)  # unclipped: layouts see it
    ax.set_yticks(range(ranks), [f"rank {r}" for r in range(ranks)])
    ax.set_ylim(ranks - 0.5, -0.5)
    ax.set_xlim(0, span)
    ax.set_xlabel(f"time ({time_unit})" if time_unit else "time")
    bubble = f"idle {trace.idle_fraction:.0%}"
    ax.set_title(f"{title} — {bubble}" if title else bubble, fontsize=10, loc="left")
    kinds = _kinds(trace)
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[k]) for k in kinds]
    ax.legend(handles, [KIND_NAMES[k] for k in kinds], loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(kinds),
              fontsize=LEGEND_POINTS, frameon=False, borderaxespad=0.2)


def _kinds(trace: Trace) -> list[str]:
    """The action kinds the trace holds, in PyTorch's order (F, I, W, B)."""
    present = {e.action.kind for events in trace.events for e in events}
    return [k for k in KINDS if k in present]


def chunk_colour(kind: str, chunk: int, chunks: int) -> tuple:
    """The colour of ``kind`` (F, I, W, B) for model chunk ``chunk`` of ``chunks``: darkest for chunk 0, lighter after."""
    from matplotlib.colors import to_rgb
    base = to_rgb(COLOURS[kind])
    if chunks < 2:
        return base
    t = chunk / (chunks - 1)  # 0 for the first chunk, 1 for the last
    dark, light = 0.72, 0.45  # chunk 0: 72% of the base colour; the last chunk: 45% of the way to white
    return tuple(c * dark * (1 - t) + (c + (1 - c) * light) * t for c in base)


def _points_per_unit(ax, span: float) -> float:
    """Typographic points per x unit of ``ax`` (after a tight layout the axes are a little narrower: 0.9)."""
    return 0.9 * ax.get_position().width * ax.figure.get_figwidth() * 72 / max(span, 1e-12)


def _chunk_legend(ax, chunks: int, ranks: int, kinds: list[str]):
    """One entry per model chunk (its shades of each kind side by side), one row above the kinds' legend."""
    from matplotlib.legend import Legend
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.transforms import offset_copy
    handles = [tuple(plt.Rectangle((0, 0), 1, 1, color=chunk_colour(kind, chunk, chunks)) for kind in kinds)
               for chunk in range(chunks)]
    labels = [f"chunk {chunk} (stages {chunk * ranks}-{chunk * ranks + ranks - 1})" for chunk in range(chunks)]
    return Legend(ax, handles, labels, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=chunks,
                  fontsize=LEGEND_POINTS, bbox_transform=offset_copy(ax.transAxes, fig=ax.figure, y=12, units="points"),
                  frameon=False, borderaxespad=0.2, handlelength=1.6, handletextpad=0.4, columnspacing=1.0,
                  handler_map={tuple: HandlerTuple(ndivide=None, pad=0.1)})


def draw_collectives(ax, trace: Trace, time_unit: str = "ms") -> None:
    """Mark each all-reduce of ``trace`` on its rank's row, over the action it ran in: inside a stage (tensor
    parallel) in black, across replicas (data parallel) in purple. Draw the timeline first."""
    scale = 1000.0 if time_unit == "ms" else 1.0
    colours = {"tp": "black", "dp": "#8172B3"}
    for rank, r in enumerate(trace.ranks):
        for kind, start, end, _ in r.collectives:
            ax.broken_barh([(start * scale, max((end - start) * scale, 0.3))], (rank - 0.4, 0.8),
                           facecolors=colours[kind], edgecolors="none")
    names = {"tp": "all-reduce inside a stage", "dp": "all-reduce across replicas"}
    kinds = [k for k in ("tp", "dp") if any(c[0] == k for r in trace.ranks for c in r.collectives)]
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[k]) for k in ("F", "B")]
    handles += [plt.Rectangle((0, 0), 1, 1, color=colours[k]) for k in kinds]
    ax.legend(handles, ["forward", "backward"] + [names[k] for k in kinds], loc="lower right",
              bbox_to_anchor=(1.0, 1.0), ncol=2 + len(kinds), fontsize=7, frameon=False, borderaxespad=0.2)


def timeline(trace: Trace, title: str = "", time_unit: str = "ms", width: float = 10.0):
    """One trace as a figure."""
    fig, ax = plt.subplots(figsize=(width, 0.45 * trace.world_size + 1.0))
    draw_timeline(ax, trace, title, time_unit)
    fig.tight_layout()
    return fig


def compare(measured: Trace, simulated: Trace, titles=("measured (real ranks)", "simulated (same costs)"),
            time_unit: str = "ms", width: float = 10.0):
    """Measured timeline above the simulated one, on one time axis, so gaps line up (or visibly don't)."""
    x_max = max(measured.step_time_s, simulated.step_time_s)
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
