"""Hybrid runs on real gloo ranks: PP x TP (x DP) grids give the one-process gradients for every schedule, the trace
counts the traffic inside a stage apart from the messages between stages, and bad grids fail before any process."""
import json
import subprocess
import sys

import pytest

from labs import ModelError, ToyModel, run_pipeline
from labs.parallel.grid import Grid, GridError
from labs.parallel.tensor import MLPModel

L, H, B, M = 4, 8, 16, 4  # layers, width h, batch, micro-batches: small, so 8 ranks stay quick on 2 cores


def test_layout_puts_tensor_parallel_innermost():
    grid = Grid(P=2, T=2, D=2)
    assert [grid.coordinates(r) for r in range(8)] == [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1),
                                                      (1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1)]
    assert all(grid.rank_of(*grid.coordinates(r)) == r for r in range(8))
    assert "replica 1, pipeline rank 0: ranks 4 5" in grid.layout()


def _expected_traffic(P, T, D, v=1, first_block_skips_f=True):
    """Formulas: each boundary carries an activation forward and a gradient back per micro-batch, on each of the T
    tensor-parallel ranks; each block all-reduces a (b, h) tensor forward (g) and backward (f), except the first
    block's f; data parallel all-reduces each rank's gradients once."""
    between = T * 2 * (v * P - 1) * B * H * 4
    inside = T * (2 * L - first_block_skips_f) * B * H * 4 if T > 1 else 0
    return between, inside


@pytest.mark.parametrize("P,T,D", [(2, 2, 1), (4, 2, 1), (2, 2, 2)])
@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_grids_give_one_process_gradients(schedule, P, T, D):
    run = run_pipeline(schedule, P=P, M=M, layers=L, width=H, batch_size=B, pace_ms=None,
                       T=T, D=D, warmup_steps=0)
    assert run.max_grad_error <= 1e-5
    assert abs(run.loss - run.reference_loss) <= 1e-5
    traffic = run.trace.traffic
    assert run.trace.world_size == P * T * D
    assert (traffic["bytes_between_stages"], traffic["bytes_inside_stages"]) == _expected_traffic(P, T, D)
    assert traffic["all_reduces_inside_stages"] == T * D * M * (2 * L - 1)
    per_rank_params = MLPModel(L, H).parameters_per_rank(T, P)
    assert traffic["bytes_across_replicas"] == (P * T * D * per_rank_params * 4 if D > 1 else 0)


@pytest.mark.parametrize("schedule,v", [("naive", 1), ("interleaved", 2),
                                        ([["0F0", "0F1", "0B1", "0B0"], ["1F0", "1F1", "1B1", "1B0"]], 1)])
def test_every_schedule_runs_on_the_grid_unchanged(schedule, v):
    microbatches = 1 if schedule == "naive" else 2 if isinstance(schedule, list) else M
    run = run_pipeline(schedule, P=2, M=microbatches, v=v, layers=L, width=H,
                       batch_size=B, pace_ms=None, T=2, warmup_steps=0)
    assert run.max_grad_error <= 1e-5
    assert run.trace.traffic["bytes_between_stages"] == _expected_traffic(2, 2, 1, v)[0]


def test_data_parallel_alone_on_the_toy_model():
    run = run_pipeline("1f1b", P=2, M=2, layers=L, width=H, batch_size=B, pace_ms=None,
                       D=2, warmup_steps=0)
    assert isinstance(run.grid, Grid) and run.trace.world_size == 4 and run.max_grad_error <= 1e-5


def test_without_the_data_parallel_all_reduce_the_check_fails(monkeypatch):
    """Each replica is checked: skip the gradient all-reduce (forked ranks inherit the patch) and it shows."""
    import labs.parallel.grid
    monkeypatch.setattr(labs.parallel.grid, "all_reduce_gradients", lambda *args: None)
    run = run_pipeline("1f1b", P=2, M=2, layers=L, width=H, batch_size=B, pace_ms=None,
                       D=2, warmup_steps=0)
    assert run.max_grad_error > 1e-4


@pytest.mark.parametrize("kwargs,message", [
    (dict(T=3, width=16), "hidden size 4h = 64 .* does not split into T=3"),
    (dict(D=3, batch_size=16), "does not split into D=3 replicas x M=4"),
    (dict(T=0), "tensor-parallel ranks T .* whole number >= 1"),
    (dict(D=-1), "data-parallel replicas D .* whole number >= 1"),
    (dict(T=2, model=ToyModel(4, 8)), "use labs.parallel.tensor.MLPModel or T=1"),
])
def test_bad_grids_fail_before_any_process_starts(kwargs, message, monkeypatch):
    import labs.pipeline
    monkeypatch.setattr(labs.pipeline, "launch", lambda *a, **k: pytest.fail("a process was started"))
    with pytest.raises(GridError, match=message):
        run_pipeline(**{"schedule": "1f1b", "P": 2, "M": 4, "layers": 4, **kwargs})
    assert issubclass(GridError, ModelError)  # the CLI reports it as bad input (exit code 2)


def test_a_grid_must_match_the_processes_torchrun_started():
    with pytest.raises(GridError, match="needs P\\*T\\*D = 2\\*2\\*2 = 8 ranks but 6 were started"):
        Grid(2, 2, 2).check(MLPModel(4, 8), batch_size=16, M=2, world_size=6)


def test_cli_reports_the_grid_and_both_kinds_of_traffic(capsys):
    """``python -m labs run`` in this process (a fresh interpreter costs ~2 s of imports; the command itself runs
    under torchrun below and in test_runtime)."""
    from labs.__main__ import main
    assert main(["run", "--schedule", "1f1b", "-P", "2", "--tp", "2", "--dp", "2", "-M", "4", "--layers", str(L),
                 "--width", str(H), "--batch-size", str(B), "--pace-ms", "off", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["max_grad_error"] <= 1e-5
    assert summary["grid"]["P"] == 2 and summary["grid"]["T"] == 2 and summary["grid"]["D"] == 2
    assert (summary["P"], summary["T"], summary["D"]) == (2, 2, 2)
    assert summary["grid"]["coordinates"][5] == [1, 0, 1]
    assert (summary["bytes_between_stages"], summary["bytes_inside_stages"]) == _expected_traffic(2, 2, 2)
    assert main(["run", "--tp", "3"]) == 2 and "does not split into T=3" in capsys.readouterr().err


def test_a_grid_runs_under_torchrun():
    result = subprocess.run(["torchrun", "--standalone", "--nproc-per-node", "4", "-m", "labs", "run", "--schedule",
                             "1f1b", "-P", "2", "--tp", "2", "-M", "2", "--layers", "2", "--width",
                             str(H), "--batch-size", str(B), "--pace-ms", "off"],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("gradient check") == 1 and "OK" in result.stdout
    assert "replica 0, pipeline rank 1: ranks 2 3" in result.stdout


def _group_creations(rank, how, repeats, switch):
    """Create the grid's groups ``repeats`` times, ``how`` = "mesh" (``Place``: init_device_mesh's sub-groups) or
    "groups" (tp {2, 3}, pp {1, 3}, tp {0, 1}, pp {0, 2} with dist.new_group, as a learner's code makes them); rank 0
    arrives 0.2 s late each time. Returns each creation's (entered, left) times on the machine's monotonic clock."""
    import os
    import time

    import torch.distributed as dist

    from labs.parallel.grid import Place
    if switch is not None:
        os.environ["TORCH_DIST_INIT_BARRIER"] = switch  # torch reads it at every group creation
    times = []
    for _ in range(repeats):
        if rank == 0:
            time.sleep(0.2)
        entered = time.monotonic()
        if how == "mesh":
            Place(rank, 2, Grid(P=2, T=2))
        else:
            for ranks in ([2, 3], [1, 3], [0, 1], [0, 2]):  # every rank makes every group, in one order
                dist.new_group(ranks)
        times.append((entered, time.monotonic()))
    return times


def test_no_rank_leaves_the_grids_group_creation_before_every_rank_has_entered_it():
    """The start-up race of sub-groups ("Gloo connectFullMesh failed ... Connection closed by peer" on a busy machine:
    a rank left the groups' creation, finished and exited while a slower member was still connecting to it) cannot
    happen for any group a run makes: each creation ends with a barrier over all ranks (the launcher's
    TORCH_DIST_INIT_BARRIER=1). Six creations of the grid's groups each way in one launch, rank 0 late each time:
    every rank leaves each one after the last rank entered it. Negative control: with torch's barrier switched off,
    rank 3 (in no group with rank 0: tp {2, 3}, pp {1, 3}) leaves new_group before rank 0 has entered. (The mesh's
    own set-up waits for every rank even without the switch: +5..+15 ms margins measured, so it has no control.)"""
    from labs.runtime import launch
    margins = {}
    for how, switch in (("mesh", None), ("groups", None), ("groups", "0")):
        per_rank = launch(_group_creations, world_size=4, args=(how, 6, switch), timeout_s=60)
        margins[how, switch] = [min(t[k][1] for t in per_rank) - max(t[k][0] for t in per_rank) for k in range(6)]
    # first out - last in, seconds, per creation
    assert all(m >= 0 for m in margins["mesh", None] + margins["groups", None]), margins
    assert sum(m < 0 for m in margins["groups", "0"]) >= 3, margins  # rank 3 out ~0.2 s before rank 0 is in
