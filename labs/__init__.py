"""labs: the package behind the pipeline-parallelism course.

Real multi-process pipelines in a few thousand lines, in rooms by layer (every import points down):
``theory``, ``errors``, ``checks`` -> ``schedules`` (schedules as data) -> ``timeline`` (costs, traces, the
simulator, analysis) -> ``viz`` and ``models`` -> ``parallel`` (grid, tensor, data) -> ``runtime`` (launch, transport,
step, pacing) -> ``pipeline`` (``run_pipeline``) -> ``course`` (tools of single notebooks) -> ``grading`` ->
``exercises``. ``python -m labs --help`` lists the command-line tools.

The names below are the everyday ones, by the notebook that introduces them. They are loaded on first use, so
``import labs.schedules`` or ``labs.theory`` does not load torch; ``labs.run_pipeline`` or ``labs.launch`` does.
"""
from __future__ import annotations

import importlib
import os

# OpenMP threads that spin while they wait for each other (libgomp's default, which torch's CPU build uses) make a
# Jupyter kernel's torch work ~30-150x slower when another program keeps a core busy: measured on 2 cores, one busy,
# the capstone's one-process reference (5 Adam steps of the tiny GPT) took 28 s in a kernel instead of 0.9 s, and
# 0.9 s with threads that sleep. Threads that sleep cost nothing measurable idle. It takes effect when torch is
# loaded after this line (every notebook's setup cell imports labs first); a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_HOMES = {
    # 00 ranks and messages
    "launch": "runtime.launcher", "report": "runtime.launcher",
    "LaunchTimeout": "runtime.failures", "RankFailed": "runtime.failures",
    # 01 the naive pipeline
    "ToyModel": "models.toy", "split_layers": "models.cut", "run_pipeline": "pipeline", "PipelineRun": "pipeline",
    # 02 micro-batching
    "idle_fraction": "theory", "bubble_overhead": "theory",
    # 03 GPipe: schedules as data, validated, simulated, rendered
    "Action": "schedules.actions", "parse": "schedules.actions", "parse_action": "schedules.actions",
    "naive": "schedules.classic", "gpipe": "schedules.classic", "make": "schedules", "validate": "schedules.validation",
    "Costs": "timeline.costs", "simulate": "timeline.simulator", "Trace": "timeline.trace", "render": "viz.text",
    # 04-05 1F1B and interleaved
    "one_f_one_b": "schedules.classic", "interleaved": "schedules.classic",
    # 07 communication
    "Link": "timeline.costs", "Network": "timeline.costs",
    # 11 zero bubble
    "zb_h1": "schedules.zero_bubble", "zb_v": "schedules.zero_bubble",
    # what goes wrong: bad input (before any process starts) or a run that fails
    "LabsError": "errors", "InputError": "errors", "ScheduleError": "errors", "ModelError": "errors",
    "GridError": "errors", "RunFailure": "errors",
}
_ROOMS = ("checks", "course", "errors", "exercises", "grading", "models", "parallel", "pipeline", "runtime",
          "schedules", "theory", "timeline", "viz")

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    """``labs.X``: an everyday name from its home module, or one of the package's rooms, imported on first use."""
    if name in _HOMES:
        value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
        globals()[name] = value
        return value
    if name in _ROOMS:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'labs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES) | set(_ROOMS))
