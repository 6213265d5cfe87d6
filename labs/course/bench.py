"""Benchmark: launch time, our step time against the simulated one, and against ``torch.distributed.pipelining``.

    python -m labs bench [--pace-ms 10,20] [-M 8] [--json]

Everything is measured in this one run, on this machine: the time to launch 4 ranks that do nothing (median of 5);
for each schedule, our runtime's step time over the simulated one (the same schedule simulated with the same costs
and a free link: what a perfect runtime would take); and PyTorch's ScheduleGPipe, Schedule1F1B and
ScheduleInterleaved1F1B running the same paced stages on gloo, timed the same way (a barrier, one warm-up step, then
one step; the slowest rank's end), median of 3 launches each. Ratios below 1.0 in the last column mean ours is faster.
"""
from __future__ import annotations

import json
import statistics
import time

import torch
import torch.distributed as dist

from ..models.toy import ToyModel, loss_fn
from ..pipeline import run_pipeline
from ..runtime.launcher import launch
from ..runtime.step import PipelineJob, build_stages
from ..schedules import make, stage_owners

__all__ = ["LAYERS", "P", "compare", "launch_time", "main"]

P, LAYERS = 4, 8  # pipeline ranks and layers of every benchmarked run


def _nothing(rank: int) -> int:
    return rank


def launch_time(world_size: int = 4, repeats: int = 5) -> float:
    """Median seconds to launch ``world_size`` ranks that do nothing (after one launch that pays lazy imports)."""
    launch(_nothing, world_size)  # first launch pays for lazy imports
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        launch(_nothing, world_size)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _torch_step(rank: int, name: str, M: int, v: int, pace_s, batch_size: int) -> float:
    """One timed step of torch.distributed.pipelining on the same model, cut and paced as ours."""
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe, ScheduleInterleaved1F1B

    # The runtime's own stage builder: the same layers, cut and pacing as our run, by construction.
    job = PipelineJob(make(name, P, M, v), ToyModel(num_layers=LAYERS), batch_size, pace_s)
    num_stages = P * v
    mine = build_stages(rank, job, stage_owners(job.schedule), num_stages)
    stages = [PipelineStage(stage.module, s, num_stages, torch.device("cpu")) for s, stage in sorted(mine.items())]
    if name == "interleaved":
        schedule = ScheduleInterleaved1F1B(stages, M, loss_fn=loss_fn)
    else:
        schedule = (ScheduleGPipe if name in ("gpipe", "naive") else Schedule1F1B)(stages[0], M, loss_fn=loss_fn)
    inputs, targets = job.model.batch(batch_size)
    elapsed = 0.0
    for _ in range(2):  # warm-up, then the timed step
        dist.barrier()
        started = time.perf_counter()
        if rank == 0:
            schedule.step(inputs)
        elif rank == (num_stages - 1) % P:  # holds the last stage
            schedule.step(target=targets, losses=[])
        else:
            schedule.step()
        elapsed = time.perf_counter() - started
    return elapsed


def compare(name: str, M: int, v: int, pace_ms, batch_size: int = 64, repeats: int = 3) -> dict:
    """One row of the benchmark, P=4 ranks: the median over ``repeats`` launches of each runtime (seconds and
    ratios), alternating so that both see the same machine load."""
    pace_s = None if pace_ms is None else (pace_ms[0] / 1000, pace_ms[1] / 1000)
    runs, torch_times = [], []
    for _ in range(repeats):
        runs.append(run_pipeline(name, P, M, v, LAYERS, batch_size=batch_size, pace_ms=pace_ms))
        torch_times.append(max(launch(_torch_step, P, args=(name, M, v, pace_s, batch_size), timeout_s=120)))
    ours = sorted(runs, key=lambda r: r.step_time_s)[repeats // 2]
    theirs = statistics.median(torch_times)
    simulated = ours.simulated_step_time_s
    return {"schedule": name, "M": M, "v": v, "ours_s": ours.step_time_s, "simulated_s": simulated,
            "torch_s": theirs, "ours_over_simulated": ours.step_time_s / simulated,
            "torch_over_simulated": theirs / simulated, "ours_over_torch": ours.step_time_s / theirs,
            "idle_fraction": ours.idle_fraction, "idle_fraction_theory": ours.idle_fraction_theory,
            "max_grad_error": ours.max_grad_error}


def main(args) -> int:
    """``python -m labs bench``: print the table (or one JSON object with ``--json``)."""
    pace_ms, M = args.pace_ms, args.M
    report = {"launch_4_ranks_s": launch_time(), "pace_ms": pace_ms, "rows": []}
    for name, m, v in [("naive", 1, 1), ("gpipe", M, 1), ("1f1b", M, 1), ("interleaved", M, 2)]:
        report["rows"].append(compare(name, m, v, pace_ms))
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"launch 4 ranks that do nothing: {report['launch_4_ranks_s'] * 1000:.0f} ms (median of 5)")
    print(f"P={P}, {LAYERS} layers, pace {pace_ms} ms per layer (forward, backward)\n")
    print(f"{'schedule':12} {'M':>3} {'v':>2} {'sim. ms':>9} {'ours ms':>8} {'ours/sim.':>10} "
          f"{'torch ms':>9} {'torch/sim.':>11} {'ours/torch':>10}")
    for r in report["rows"]:
        print(f"{r['schedule']:12} {r['M']:3d} {r['v']:2d} {r['simulated_s'] * 1000:9.1f} "
              f"{r['ours_s'] * 1000:8.1f} {r['ours_over_simulated']:10.3f} {r['torch_s'] * 1000:9.1f} "
              f"{r['torch_over_simulated']:11.3f} {r['ours_over_torch']:10.3f}")
    return 0
