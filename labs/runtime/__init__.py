"""The real runtime: launch N ranks, walk each rank's action list with real messages, pace the compute.

* ``launcher``: ``launch(fn, world_size)``, ``report``; ``failures``: ``RankFailed``, ``LaunchTimeout``;
* ``devices``: GPUs, backend and start method, ``check_device``, torchrun or leftover variables;
* ``torchrun``: ``launch`` in processes torchrun started (one or several machines), ``RanksLost``;
* ``transport``: ``Transport``, one rank's messages of one step (tagged or in order, costed, recorded);
* ``step``: ``PipelineJob``, ``run_rank``, ``run_step``, ``build_stages``;
* ``pacing``: paced compute, uneven stages and stragglers; ``split_backward``: B and W apart (zero bubble).
"""
from __future__ import annotations

from .devices import (check_device, default_backend, default_start_method, gpus_visible, leftover_distributed_env,
                      under_torchrun)
from .failures import LaunchTimeout, RankFailed
from .launcher import MAX_RANKS, launch, report
from .pacing import Paced, paced, parse_factor, sleep_until, stage_paces, three_way
from .split_backward import SplitBackward
from .step import PipelineJob, RankResult, build_stages, run_rank, run_step
from .torchrun import RanksLost
from .transport import Transport, uses_tags

__all__ = ["LaunchTimeout", "MAX_RANKS", "Paced", "PipelineJob", "RankFailed", "RankResult", "RanksLost",
           "SplitBackward", "Transport", "build_stages", "check_device", "default_backend", "default_start_method",
           "gpus_visible", "launch", "leftover_distributed_env", "paced", "parse_factor", "report", "run_rank", "run_step", "sleep_until", "stage_paces",
           "three_way", "under_torchrun", "uses_tags"]
