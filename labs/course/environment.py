"""What this machine offers the course, and what ``labs.launch`` will do with it.

    describe()        # a dict: device, GPUs, backend, start method (and why), cores, ranks that fit
    print(explain())  # the same, in sentences

Everything here is read from ``labs.runtime.devices``' own rules (``default_backend``, ``default_start_method``,
``gpus_visible``), so what it says is what a launch will do. Nothing here starts a process or touches CUDA.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import platform

import torch
import torch.distributed as dist

from ..runtime.devices import (default_backend, default_start_method, gpus_visible, leftover_distributed_env,
                               under_torchrun)

__all__ = ["describe", "explain"]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may use (containers, taskset)
    except AttributeError:
        return os.cpu_count() or 1


def _gpu_names(count: int) -> list[str]:
    names = []
    for index in range(count):
        try:
            names.append(torch.cuda.get_device_name(index))
        except Exception:  # a driver that cannot answer: say so rather than fail
            names.append("unknown GPU")
    return names


def _distributed(world_size: int) -> tuple[str | None, str]:
    """Who started this process, as launch will see it: torchrun, leftover variables, a group joined here, or none."""
    if under_torchrun():
        return "torchrun", (f"torchrun started this process (rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}, "
                            f"node {os.environ['GROUP_RANK']}): launch runs fn once here, for this rank")
    joined = dist.is_available() and dist.is_initialized()
    group = (f"this process already joined a process group of {dist.get_world_size()} rank(s) "
             f"(dist.init_process_group was called here)" if joined else "")
    leftover = leftover_distributed_env()
    if joined and dist.get_world_size() == world_size and world_size > 1:
        return "group", f"{group}: launch runs fn once here, for this rank, in that group"
    if joined:
        return "group", (f"{group}: launch refuses to start {world_size} ranks beside it; call "
                         f"torch.distributed.destroy_process_group() first (or restart the kernel)")
    if leftover:
        names = ", ".join(f"{k}={v}" for k, v in leftover.items())
        return "leftover variables", (
            f"{names} are set but torchrun did not start this process (no TORCHELASTIC_RUN_ID): launch ignores "
            f"them and starts its own ranks; to clear them: for k in {tuple(leftover)}: os.environ.pop(k)")
    return None, ""


def describe(world_size: int = 4) -> dict:
    """What a ``labs.launch(fn, world_size)`` would use here, and why."""
    gpus = gpus_visible()
    backend = default_backend(world_size)
    method = default_start_method()
    cores = _cores()
    distributed, distributed_why = _distributed(world_size)
    if backend == "nccl":
        backend_why = f"NCCL: {gpus} GPUs, one per rank, so each rank owns its device"
    elif gpus:
        backend_why = (f"gloo: {gpus} GPU(s) for {world_size} ranks; NCCL refuses two ranks on one GPU "
                       f"('Duplicate GPU detected'), so the ranks talk through gloo")
    else:
        backend_why = "gloo: no GPU, and gloo is torch.distributed's CPU backend"
    if method == "fork":
        method_why = ("fork: no GPU in play, so children can inherit the notebook's memory (fast, and functions "
                      "defined in a cell need no pickling)")
    elif "fork" not in mp.get_all_start_methods():
        method_why = "spawn: this operating system has no fork"
    else:
        method_why = ("spawn: a GPU is visible and a forked child cannot use CUDA once the parent touched it; "
                      "cell functions travel by value through cloudpickle")
    if gpus:
        fit = gpus if backend == "nccl" else max(cores, 1)
        fit_why = (f"{gpus} GPU(s): one rank per GPU under NCCL" if backend == "nccl" else
                   f"ranks share the GPU through gloo; about one rank per CPU core ({cores})")
    else:
        fit = cores
        fit_why = (f"{cores} CPU core(s): one rank per core computes at full speed; more ranks take turns, "
                   f"which is why the course paces compute so timelines behave like devices")
    return {"device": _gpu_names(gpus)[0] if gpus else "cpu", "gpu_names": _gpu_names(gpus), "gpus": gpus,
            "world_size": world_size, "backend": backend, "backend_why": backend_why,
            "start_method": method, "start_method_why": method_why, "cores": cores,
            "ranks_that_fit": fit, "ranks_that_fit_why": fit_why, "under_torchrun": under_torchrun(),
            "distributed": distributed, "distributed_why": distributed_why,
            "torch": torch.__version__, "python": platform.python_version(),
            "nccl_available": dist.is_nccl_available(), "gloo_available": dist.is_gloo_available()}


def explain(world_size: int = 4) -> str:
    """``describe()`` in sentences, for printing in a notebook."""
    d = describe(world_size)
    device = (f"{d['gpus']} GPU(s): {', '.join(d['gpu_names'])}" if d["gpus"] else "no GPU (CPU only)")
    lines = [f"device        {device}; {d['cores']} CPU core(s); torch {d['torch']}, Python {d['python']}",
             f"backend       {d['backend_why']}",
             f"start method  {d['start_method_why']}",
             f"ranks         {world_size} asked; about {d['ranks_that_fit']} run at full speed here "
             f"({d['ranks_that_fit_why']})"]
    if d["distributed"]:
        lines.append(f"distributed   {d['distributed_why']}")
    return "\n".join(lines)
