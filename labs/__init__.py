"""labs: the package behind the pipeline-parallelism course.

Real multi-process pipelines in a few hundred lines: schedules as data (``schedules``), their simulated timelines
(``simulate``), a launcher for N ranks (``launch``), a runtime that walks one rank's actions with real messages
(``runtime``), traces and plots. ``python -m labs --help`` lists the command-line tools.
"""
from .runtime.launcher import LaunchTimeout, RankFailed, launch, report
from .timeline.costs import Link, Network
from .models.toy import ModelError, ToyModel, split_layers
from .pipeline import PipelineRun, run_pipeline
from .schedules import (Action, ScheduleError, gpipe, interleaved, make, naive, one_f_one_b, parse, parse_action,
                        render, validate)
from .timeline.simulator import Costs, bubble_overhead, idle_fraction, simulate
from .timeline.trace import Trace

__all__ = ["Action", "Costs", "Link", "Network", "LaunchTimeout", "ModelError", "PipelineRun", "RankFailed", "ScheduleError",
           "ToyModel", "Trace", "bubble_overhead", "gpipe", "idle_fraction", "interleaved", "launch", "make",
           "naive", "one_f_one_b", "parse", "parse_action", "render", "run_pipeline", "simulate", "split_layers",
           "validate", "report"]
