"""Timelines (no torch): what actions and messages cost, the record of a step, the simulator, the trace's analysis.

* ``costs``: ``Costs`` (seconds per action and message), ``Link`` and ``Network`` (latency + bytes / bandwidth);
* ``trace``: ``Event``, ``Message``, ``RankTrace``, ``Trace``: what a real run returns and the simulator produces;
* ``simulator``: ``simulate(schedule, costs)``, ``ideal_time_s``, ``activations_in_flight``;
* ``analysis``: where each rank's time went, the critical path, ``diagnose`` (import ``labs.timeline.analysis``).
"""
from __future__ import annotations

from .costs import Costs, Link, Network, as_network, network_from_text
from .simulator import activations_in_flight, ideal_time_s, simulate
from .trace import Event, Message, RankTrace, Trace

__all__ = ["Costs", "Event", "Link", "Message", "Network", "RankTrace", "Trace", "activations_in_flight",
           "as_network", "ideal_time_s", "network_from_text", "simulate"]
