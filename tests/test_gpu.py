"""The GPU paths: one GPU shared by gloo ranks (Colab), CUDA compute under the runtime, NCCL refused when ranks would
share a GPU. Marked ``gpu``: skipped where CUDA is not available; on a GPU machine run ``pytest -m gpu tests`` (or
``bash tools/gpu_check.sh``, which also executes the notebooks there).
"""
import os
import shutil
import subprocess
import textwrap
import time

import pytest
import torch

import labs
import labs.course.environment
from labs.runtime import RankFailed, default_start_method, launch
from tests.test_launch import _children

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on a GPU machine)")]

SPAWN_TIMEOUT = 180  # spawned ranks import torch and create a CUDA context each: seconds, not milliseconds


def _gpu_processes() -> set[int] | None:
    """PIDs that hold GPU memory, per nvidia-smi (None where it cannot say, e.g. inside some sandboxes)."""
    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30)
    if out.returncode:
        return None
    return {int(line) for line in out.stdout.split() if line.strip().isdigit()}


def _cell_function(source: str):
    """A function defined the way a notebook cell defines it (module ``__main__``), so spawn must send it by value."""
    namespace = {"__name__": "__main__"}
    exec(textwrap.dedent(source), namespace)
    return next(v for k, v in namespace.items() if callable(v) and not k.startswith("__"))


def test_one_gpu_means_gloo_and_spawn():
    described = labs.course.environment.describe(world_size=4)
    assert described["gpus"] >= 1
    if described["gpus"] < 4:
        assert described["backend"] == "gloo", described["backend_why"]
    assert default_start_method() == "spawn"


def test_a_cell_function_runs_on_spawned_ranks_with_cuda_compute():
    fn = _cell_function("""
        import torch
        def on_gpu(rank):
            x = torch.full((4,), float(rank), device="cuda")
            return float(x.sum()), torch.cuda.current_device()
    """)
    results = launch(fn, world_size=2, timeout_s=SPAWN_TIMEOUT)
    assert [value for value, _ in results] == [0.0, 4.0]


@pytest.mark.parametrize("pace_ms", [None, (5, 10)], ids=["unpaced", "paced"])
@pytest.mark.parametrize("name,M,v", [("naive", 1, 1), ("gpipe", 4, 1), ("1f1b", 4, 1), ("interleaved", 4, 2)])
def test_every_schedule_on_cuda_matches_one_process(name, M, v, pace_ms):
    run = labs.run_pipeline(name, P=4, M=M, v=v, pace_ms=pace_ms, device="cuda",
                            timeout_s=SPAWN_TIMEOUT)
    assert run.max_grad_error <= 1e-5, run.summary()
    assert abs(run.loss - run.reference_loss) <= 1e-5


ZERO_BUBBLE = [("zb-h1", 1), ("zb-v", 2)]


@pytest.mark.parametrize("name,v", ZERO_BUBBLE)
def test_zero_bubble_on_cuda_in_order_matches_one_process(name, v):
    """zb-h1 and zb-v with CUDA compute and first-in-first-out matching (gloo's emulation of NCCL): every rank walks
    its lowered list (labs.schedules.lower), so the split backward's I and W run in order with exact gradients."""
    run = labs.run_pipeline(name, P=2, M=4, v=v, layers=4 * v, pace_ms=None, device="cuda", transport="in_order",
                            timeout_s=SPAWN_TIMEOUT)
    assert run.max_grad_error <= 1e-5, run.summary()
    assert all(peak > 0 for peak in run.trace.peak_memory_bytes)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs one GPU per rank: run on a machine with 2+ GPUs")
@pytest.mark.parametrize("name,v", ZERO_BUBBLE)
def test_zero_bubble_on_nccl_matches_one_process(name, v):
    """The same on NCCL itself (one GPU per rank; messages match first in, first out, tags ignored)."""
    P = min(torch.cuda.device_count(), 4)
    assert labs.course.environment.describe(world_size=P)["backend"] == "nccl"
    run = labs.run_pipeline(name, P=P, M=2 * P, v=v, layers=4 * P, pace_ms=None, device="cuda",
                            timeout_s=SPAWN_TIMEOUT)
    assert run.max_grad_error <= 1e-5, run.summary()
    assert abs(run.loss - run.reference_loss) <= 1e-5


def test_nccl_is_refused_when_ranks_would_share_a_gpu():
    world = torch.cuda.device_count() + 1
    with pytest.raises(ValueError, match="gloo"):
        launch(lambda rank: rank, world_size=world, backend="nccl", timeout_s=SPAWN_TIMEOUT)


def test_a_failing_rank_surfaces_as_on_cpu():
    fn = _cell_function("""
        import torch
        def fails_on_one(rank):
            torch.ones(1, device="cuda")
            if rank == 1:
                raise ValueError("rank one is unhappy on the GPU")
            import time; time.sleep(120)
    """)
    started = time.perf_counter()
    with pytest.raises(RankFailed) as error:
        launch(fn, world_size=2, timeout_s=SPAWN_TIMEOUT)
    assert error.value.rank == 1 and "rank one is unhappy" in str(error.value)
    assert time.perf_counter() - started < 60
    assert _children() == []


def test_no_process_or_gpu_memory_is_left_behind():
    labs.run_pipeline("1f1b", P=2, M=4, pace_ms=None, device="cuda", timeout_s=SPAWN_TIMEOUT)
    assert _children() == []
    holders = _gpu_processes()
    if holders is not None:
        assert holders <= {os.getpid()}, f"processes still hold GPU memory: {sorted(holders - {os.getpid()})}"
