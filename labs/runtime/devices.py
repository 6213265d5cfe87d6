"""What this machine offers a launch: GPUs, the backend, the start method, torchrun, a device name's check.

``labs.runtime.launcher`` and ``labs.course.environment`` read these rules, so what the environment notebook says is
what a launch does. Nothing here starts a process or touches CUDA (``torch.cuda.device_count`` only asks).
"""
from __future__ import annotations

import multiprocessing as mp
import os

import torch
import torch.distributed as dist

from ..errors import InputError

__all__ = ["check_device", "default_backend", "default_start_method", "gpus_visible", "leftover_distributed_env",
           "under_torchrun"]


def gpus_visible() -> int:
    """GPUs torch can see (0 on a CPU-only build, without touching CUDA)."""
    return torch.cuda.device_count() if torch.backends.cuda.is_built() else 0


def default_backend(world_size: int) -> str:
    """NCCL with one GPU per rank; gloo otherwise (NCCL refuses two ranks on one GPU)."""
    return "nccl" if gpus_visible() >= world_size and dist.is_nccl_available() else "gloo"


def default_start_method() -> str:
    """fork when no GPU is in play and fork exists (fast, no pickling); spawn otherwise (CUDA is not fork-safe)."""
    if "fork" in mp.get_all_start_methods() and not torch.cuda.is_initialized() and gpus_visible() == 0:
        return "fork"
    return "spawn"


_RENDEZVOUS_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")  # what tutorials set by hand too
_TORCHRUN_VARS = ("TORCHELASTIC_RUN_ID", "GROUP_RANK", "LOCAL_RANK")  # set for each worker by torchrun's agent only


def under_torchrun() -> bool:
    """Whether torchrun (``torch.distributed.run``) started this process: RANK, WORLD_SIZE, MASTER_ADDR and
    MASTER_PORT are set, and so are the variables only torchrun's agent sets (TORCHELASTIC_RUN_ID, GROUP_RANK,
    LOCAL_RANK). RANK and the others alone are leftovers (``leftover_distributed_env``), not torchrun."""
    return all(k in os.environ for k in _RENDEZVOUS_VARS + _TORCHRUN_VARS)


def leftover_distributed_env() -> dict[str, str]:
    """RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (whichever are set) when torchrun did not start this process: set
    by hand, as many tutorials do before ``dist.init_process_group``. ``labs.launch`` ignores them (its ranks meet
    through a file store); empty under torchrun or when none is set."""
    if under_torchrun():
        return {}
    return {k: os.environ[k] for k in _RENDEZVOUS_VARS if k in os.environ}


def check_device(device) -> str:
    """``device`` if it is 'cpu' or 'cuda'/'cuda:N' on a machine where torch sees that GPU; InputError otherwise."""
    if not isinstance(device, str) or not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        raise InputError(f"device is 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}")
    if device.startswith("cuda"):
        index = device.partition(":")[2]
        if index and not (index.isascii() and index.isdigit()):
            raise InputError(f"device {device!r}: write 'cuda' or 'cuda:N' with N a GPU number")
        gpus = gpus_visible()
        if gpus == 0:
            raise InputError(f"device={device!r} but torch sees no CUDA GPU on this machine: use device='cpu' "
                             f"(or install a CUDA build of torch on a machine with a GPU)")
        if index and int(index) >= gpus:
            raise InputError(f"device={device!r} but torch sees {gpus} GPU(s), numbered 0 to {gpus - 1}")
    return device
