"""The interactive schedule explorer: pick a schedule and its costs, see the timeline, the bubble and the memory.

    explorer()          # in a notebook: sliders -> timeline, idle fraction, activations per rank
    fig, summary = explore("1f1b", P=4, M=8, v=1, forward_ms=10, backward_ms=20, link_ms=1)
    fig, summary = explore("zb-h1", P=4, M=8, forward_ms=10, backward_ms=20, weight_ms=10)

Everything here is simulated (``labs.timeline.simulator``), so it redraws instantly: the widget only calls ``explore``.
Times are in milliseconds. ``forward_ms`` and ``backward_ms`` are the time of one micro-batch through one rank's share
of the model; with ``interleaved`` that share is cut into ``v`` chunks, each taking ``1/v`` of it, so the total work
stays the same whatever ``v`` is and only the schedule changes. ``link_ms`` is the time one message takes between
ranks. ``v`` applies to ``interleaved`` only (``zb-v`` and ``dualpipe-v`` always hold 2 chunks in a V, the others one
stage per rank). ``weight_ms`` is the part of ``backward_ms`` that computes the weights' gradients (W): the
zero-bubble schedules (``zb-h1``, ``zb-h2``, ``zb-v``, see ``labs.schedules.zero_bubble``) run it apart from the input
gradient I = backward - weight; ``dualpipe-v`` splits some backwards; the others run the backward whole (B = I + W).
Default: half of it (close to a transformer layer's split). A closed form is printed only where its conditions hold.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

from ..schedules import ScheduleError, dualpipe_v_pairs, make, uses_split_backward
from ..theory import bubble_overhead, idle_fraction, zb_h1_idle_fraction, zb_h2_step, zb_v_step
from ..timeline.costs import Costs
from ..timeline.simulator import simulate
from .plots import COLOURS, draw_timeline

__all__ = ["SCHEDULES", "describe", "explore", "explorer"]

SCHEDULES = ("gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2", "zb-v", "dualpipe-v")
_V = {"zb-v": 2, "dualpipe-v": 2}  # schedules that always hold two chunks per rank


def explore(schedule: str = "1f1b", P: int = 4, M: int = 8, v: int = 2, forward_ms: float = 10.0,
            backward_ms: float = 20.0, link_ms: float = 0.0, width: float = 10.0, weight_ms: float | None = None):
    """Simulate ``schedule`` on P ranks with M micro-batches; return (figure, summary dict).

    Raises ScheduleError (with what to change) for a combination that cannot be built, e.g. interleaved with M not
    a multiple of P, or dualpipe-v with M < 2P. The summary holds the step time (ms), the ideal time (one rank's
    compute, M(F+B)), the simulated idle fraction, the closed form where one applies (``idle_fraction_theory``, and
    ``theory`` saying which, or why none), the peak activations per rank and the messages per step.
    """
    if schedule not in SCHEDULES:
        raise ScheduleError(f"unknown schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")
    if min(forward_ms, backward_ms) <= 0 or link_ms < 0:
        raise ScheduleError("forward_ms and backward_ms must be > 0 and link_ms >= 0")
    weight_ms = backward_ms / 2 if weight_ms is None else weight_ms
    if not 0 <= weight_ms < backward_ms:
        raise ScheduleError(f"weight_ms (W, {weight_ms} ms) is the part of the backward ({backward_ms} ms) that "
                            f"computes the weights' gradients: choose 0 <= weight_ms < backward_ms")
    v = _V.get(schedule, v if schedule == "interleaved" else 1)
    actions = make(schedule, P, M, v)
    split = uses_split_backward(actions)
    b, w = backward_ms - weight_ms, weight_ms  # I and W; a full backward B costs their sum (labs.timeline.Costs)
    costs = Costs(forward_s=forward_ms / 1000 / v, backward_s=b / 1000 / v, weight_s=w / 1000 / v,
                  link_s=link_ms / 1000)
    pairs = dualpipe_v_pairs(P, M) if schedule == "dualpipe-v" else frozenset()  # issued together, as PyTorch does
    trace = simulate(actions, costs, together=pairs)
    theory, label = _theory(schedule, P, M, v, forward_ms, b, w, link_ms)
    summary = {
        "schedule": schedule, "P": P, "M": M, "v": v,
        "forward_ms": forward_ms, "backward_ms": backward_ms, "weight_ms": weight_ms if split else None,
        "link_ms": link_ms,
        "step_ms": trace.step_time_s * 1000,
        "ideal_ms": M * (forward_ms + backward_ms),  # one rank's work, nothing idle
        "idle_fraction": trace.idle_fraction,
        "idle_fraction_theory": theory, "theory": label,
        "bubble_overhead_theory": bubble_overhead(P, M, v),  # (P-1)/(vM): bubble time over compute time
        "peak_activations": trace.peak_activations,  # micro-batch chunks held at the peak, per rank
        "peak_activations_in_microbatches": [n / v for n in trace.peak_activations],
        "messages": trace.messages,
    }
    return _figure(trace, summary, width), summary


def _theory(schedule: str, P: int, M: int, v: int, F: float, I: float, W: float, link_ms: float):
    """(the closed-form idle fraction or None, what it is or why there is none), with its conditions checked."""
    free = "" if link_ms == 0 else " (for a free link: here every message costs link_ms)"
    if schedule in ("gpipe", "1f1b", "interleaved"):
        return idle_fraction(P, M, v), f"closed form (P-1)/(vM+P-1){free}"
    if schedule == "zb-h1":
        form = ("the paper's (P-1)(F+I-W)" if W <= min(F, I) else
                "(P-1)max(F+I-W, F, I) (the paper's (P-1)(F+I-W) needs W <= F and W <= I)")
        return (zb_h1_idle_fraction(P, M, F, I, W) if M >= P else None,
                f"closed form {form}{free}" if M >= P else "no closed form for M < P")
    work = M * (F + I + W)
    if schedule == "zb-h2" and M >= 2 * P - 1:
        return 1 - work / zb_h2_step(P, M, F, I, W), f"closed form (P-1)max(F, F+I-2W, I-F){free}"
    if schedule == "zb-v" and F == I == W:
        return 1 - work / zb_v_step(P, M, F / v), f"closed form 6MF+(P-1)F in chunk times (F = I = W){free}"
    why = {"zb-h2": "for M < 2P-1", "zb-v": "unless F = I = W (the order is searched for the costs)",
           "dualpipe-v": "for the step (DeepSeek's bubble (P-1)(F&B+B-3W) is inside a rank's span)"}[schedule]
    return None, f"no closed form {why}"
def _figure(trace, summary: dict, width: float):
    P = summary["P"]
    fig, (ax, bars) = plt.subplots(1, 2, figsize=(width, 0.5 * P + 1.6), sharey=True,
                                   gridspec_kw={"width_ratios": [5, 1]})
    title = (f"{summary['schedule']}  P={P} M={summary['M']}" + (f" v={summary['v']}" if summary["v"] > 1 else "")
             + f"  step {summary['step_ms']:.0f} ms")
    draw_timeline(ax, trace, title)
    held = summary["peak_activations_in_microbatches"]
    bars.barh(range(P), held, color=COLOURS["F"], height=0.6)
    for rank, value in enumerate(held):
        bars.text(value, rank, f" {value:g}", va="center", fontsize=8)
    bars.set_xlim(0, max(held) * 1.35)
    bars.set_xlabel("peak activations\n(micro-batches)")
    bars.tick_params(left=False)
    fig.tight_layout()
    return fig


def describe(summary: dict) -> str:
    """One short line per fact, for printing under the figure (short enough not to wrap inside a formula)."""
    s = summary
    if s["idle_fraction_theory"] is None:
        theory = s["theory"]
    elif s["schedule"] in ("gpipe", "1f1b", "interleaved"):
        theory = (f"{s['theory']} = {s['idle_fraction_theory']:.1%}\n"
                  f"bubble over compute time (P-1)/(vM) = {s['bubble_overhead_theory']:.0%}")
    else:
        theory = f"{s['theory']}: idle {s['idle_fraction_theory']:.1%}"
    return (f"step {s['step_ms']:.1f} ms for {s['ideal_ms']:.1f} ms of work per rank\n"
            f"idle {s['idle_fraction']:.1%} of the step; {theory}\n"
            f"peak activations per rank (micro-batches): {s['peak_activations_in_microbatches']}\n"
            f"messages per step: {s['messages']}")


def explorer(schedule: str = "1f1b", P: int = 4, M: int = 8, v: int = 2, forward_ms: float = 10.0,
             backward_ms: float = 20.0, link_ms: float = 0.0, weight_ms: float = 10.0):
    """An ipywidgets UI around ``explore``: redraws as the sliders move. Returns the widget (display it)."""
    import ipywidgets as w
    from IPython.display import display

    style = {"description_width": "120px"}  # wide enough for "micro-batches M"
    slider = w.Layout(width="360px")
    controls = {
        # no description: a ToggleButtons' own description sits on a line of its own; a Label beside it does not
        "schedule": w.ToggleButtons(options=SCHEDULES, value=schedule, style={"button_width": "96px"}),
        "P": w.IntSlider(value=P, min=1, max=8, description="ranks P", style=style, layout=slider),
        "M": w.IntSlider(value=M, min=1, max=32, description="micro-batches M", style=style, layout=slider),
        "v": w.IntSlider(value=v, min=2, max=4, description="chunks v", style=style, layout=slider),
        "forward_ms": w.FloatSlider(value=forward_ms, min=1, max=50, step=1, description="forward ms", style=style,
                                    layout=slider),
        "backward_ms": w.FloatSlider(value=backward_ms, min=1, max=100, step=1, description="backward ms",
                                     style=style, layout=slider),
        "weight_ms": w.FloatSlider(value=weight_ms, min=0, max=99, step=1, description="of which W ms", style=style,
                                   layout=slider),
        "link_ms": w.FloatSlider(value=link_ms, min=0, max=20, step=0.5, description="link ms", style=style,
                              layout=slider),
    }
    for control in controls.values():
        if hasattr(control, "continuous_update"):
            control.continuous_update = False
    out = w.Output()

    def redraw(_=None):
        values = {name: control.value for name, control in controls.items()}
        controls["v"].disabled = values["schedule"] != "interleaved"
        controls["weight_ms"].disabled = values["schedule"] in ("gpipe", "1f1b", "interleaved")
        out.clear_output(wait=True)
        with out:
            try:
                fig, summary = explore(**values)
            except ScheduleError as error:
                print(f"cannot build this schedule: {error}")
                return
            display(fig)
            plt.close(fig)
            print(describe(summary))

    for control in controls.values():
        control.observe(redraw, names="value")
    names = list(controls)
    label = w.Label("schedule", layout=w.Layout(width="120px", display="flex", justify_content="flex-end",
                                                 padding="0 8px 0 0"))
    ui = w.VBox([w.HBox([label, controls["schedule"]]), w.HBox([w.VBox([controls[n] for n in names[1:4]]),
                                                                w.VBox([controls[n] for n in names[4:]])]), out])
    redraw()
    return ui
