"""Benchmark: launch time, our step time against the ideal, and against ``torch.distributed.pipelining``.

    python -m labs bench [--pace-ms 10,20] [--microbatches 8] [--json]

Everything is measured in this one run, on this machine: the time to launch 4 ranks that do nothing (median of 5);
for each schedule, our runtime's step time over the ideal (the same schedule simulated with the same costs and a
free link); and PyTorch's ScheduleGPipe, Schedule1F1B and ScheduleInterleaved1F1B running the same paced stages
on gloo, timed the same way (a barrier, one warm-up step, then one step; the slowest rank's end), median of 3 launches
each. Ratios below 1.0 in the last column mean ours is faster.
"""
from __future__ import annotations

import json
import statistics
import time

import torch
import torch.distributed as dist

from ..runtime.launcher import launch
from ..models.toy import ToyModel, loss_fn
from ..pipeline import run_pipeline
from ..runtime.step import PipelineJob, build_stages
from ..schedules import make, stage_owners

STAGES, LAYERS = 4, 8


def _nothing(rank: int) -> int:
    return rank


def launch_time(world_size: int = 4, repeats: int = 5) -> float:
    launch(_nothing, world_size)  # first launch pays for lazy imports
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        launch(_nothing, world_size)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _torch_step(rank: int, name: str, microbatches: int, virtual: int, pace, batch_size: int) -> float:
    """One timed step of torch.distributed.pipelining on the same model, cut and paced as ours."""
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe, ScheduleInterleaved1F1B

    # The runtime's own stage builder: the same layers, cut and pacing as our run, by construction.
    job = PipelineJob(make(name, STAGES, microbatches, virtual), ToyModel(num_layers=LAYERS), batch_size, pace)
    num_stages = STAGES * virtual
    mine = build_stages(rank, job, stage_owners(job.schedule), num_stages)
    stages = [PipelineStage(stage.module, s, num_stages, torch.device("cpu")) for s, stage in sorted(mine.items())]
    if name == "interleaved":
        schedule = ScheduleInterleaved1F1B(stages, microbatches, loss_fn=loss_fn)
    else:
        schedule = (ScheduleGPipe if name in ("gpipe", "naive") else Schedule1F1B)(stages[0], microbatches,
                                                                                  loss_fn=loss_fn)
    inputs, targets = job.model.batch(batch_size)
    elapsed = 0.0
    for _ in range(2):  # warm-up, then the timed step
        dist.barrier()
        started = time.perf_counter()
        if rank == 0:
            schedule.step(inputs)
        elif rank == (num_stages - 1) % STAGES:  # holds the last stage
            schedule.step(target=targets, losses=[])
        else:
            schedule.step()
        elapsed = time.perf_counter() - started
    return elapsed


def compare(name: str, microbatches: int, virtual: int, pace_ms, batch_size: int = 64, repeats: int = 3) -> dict:
    """Median over ``repeats`` launches of each runtime, alternating so that both see the same machine load."""
    pace = None if pace_ms is None else (pace_ms[0] / 1000, pace_ms[1] / 1000)
    runs, torch_times = [], []
    for _ in range(repeats):
        runs.append(run_pipeline(name, STAGES, microbatches, virtual, LAYERS, batch_size=batch_size,
                                 pace_ms=pace_ms))
        torch_times.append(max(launch(_torch_step, STAGES, args=(name, microbatches, virtual, pace, batch_size),
                                      timeout=120)))
    ours = sorted(runs, key=lambda r: r.step_time)[repeats // 2]
    theirs = statistics.median(torch_times)
    return {"schedule": name, "microbatches": microbatches, "virtual_stages": virtual,
            "ours_s": ours.step_time, "ideal_s": ours.ideal_time, "torch_s": theirs,
            "ours_over_ideal": ours.step_time / ours.ideal_time, "torch_over_ideal": theirs / ours.ideal_time,
            "ours_over_torch": ours.step_time / theirs, "bubble_fraction": ours.bubble_fraction,
            "bubble_fraction_theory": ours.bubble_fraction_theory, "max_grad_error": ours.max_grad_error}


def main(args) -> int:
    pace_ms, microbatches = args.pace_ms, args.microbatches
    report = {"launch_4_ranks_s": launch_time(), "pace_ms": pace_ms, "rows": []}
    for name, m, v in [("naive", 1, 1), ("gpipe", microbatches, 1), ("1f1b", microbatches, 1),
                       ("interleaved", microbatches, 2)]:
        report["rows"].append(compare(name, m, v, pace_ms))
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"launch 4 ranks that do nothing: {report['launch_4_ranks_s'] * 1000:.0f} ms (median of 5)")
    print(f"P={STAGES}, {LAYERS} layers, pace {pace_ms} ms per layer (forward, backward)\n")
    print(f"{'schedule':12} {'M':>3} {'v':>2} {'ideal ms':>9} {'ours ms':>8} {'ours/ideal':>10} "
          f"{'torch ms':>9} {'torch/ideal':>11} {'ours/torch':>10}")
    for r in report["rows"]:
        print(f"{r['schedule']:12} {r['microbatches']:3d} {r['virtual_stages']:2d} {r['ideal_s'] * 1000:9.1f} "
              f"{r['ours_s'] * 1000:8.1f} {r['ours_over_ideal']:10.3f} {r['torch_s'] * 1000:9.1f} "
              f"{r['torch_over_ideal']:11.3f} {r['ours_over_torch']:10.3f}")
    return 0
