"""Pictures of schedules and traces: text grids, matplotlib timelines, Perfetto files and the explorer widget.

* ``text``: ``render(schedule)``, a schedule as a text grid (re-exported here);
* ``plots``: timelines, measured against simulated, sweeps against theory (imports matplotlib);
* ``perfetto``: a trace to the Trace Event Format and back (``save``, ``load``, ``validate``);
* ``explorer``: the interactive schedule explorer (``explore``, ``explorer``; imports matplotlib).

Import the module you use (``import labs.viz.plots``): the matplotlib ones are not loaded by ``import labs``.
"""
from __future__ import annotations

from .text import render

__all__ = ["render"]
