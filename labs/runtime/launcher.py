"""Run a function on N ranks joined in one process group, from a notebook, a script or under torchrun.

    results = labs.launch(fn, world_size=4, args=(x,), timeout_s=30)   # fn(rank, x) on 4 processes

returns ``[fn(0, x), fn(1, x), ...]`` in rank order. Inside ``fn`` the default process group is ready
(``torch.distributed.send/recv`` just work). How the ranks start:

* **Start method, chosen per situation.** ``fork`` when no GPU is in play: the children inherit the parent's memory,
  so a function defined in a notebook cell needs no pickling, and 4 ranks start in about 0.2 s on a 2-core CPU.
  ``spawn`` when a GPU is visible: a forked child cannot use CUDA once the parent has touched it. Spawned children
  get the function by value through cloudpickle, so notebook functions work there too. Override with
  ``start_method=``.
* **No fixed ports.** Ranks meet through a ``FileStore`` in a fresh temporary folder, so launches never clash. The
  folder's name carries the parent's pid; a launch removes the folders of parents that died without cleaning up.
* **A rendezvous that holds on a busy machine.** Creating any process group (the default one, or one ``fn`` makes
  with ``new_group`` or ``init_device_mesh``) ends with a barrier over all ranks (``TORCH_DIST_INIT_BARRIER=1``), so
  a fast rank can never exit while a slow one is still connecting to it.
* **The heap a forked rank inherits is frozen** (``gc.freeze``), so its garbage collector never walks the parent's
  objects (see ``labs.runtime.step._quiet_gc`` for what that cost).
* **Backend.** NCCL when there is one GPU per rank, gloo otherwise (ranks cannot share one GPU under NCCL); the rules
  are in ``devices.py``.
* **Failures surface fast.** A rank that raises makes ``launch`` raise ``RankFailed`` (rank, the worker's traceback,
  its whole exception and a hint, see ``failures.py``) within a fraction of a second; the other ranks are killed. A
  run that passes ``timeout_s`` seconds raises ``LaunchTimeout`` listing what each rank last reported through
  ``report()``. No process is left behind, also on KeyboardInterrupt; a worker whose parent dies is killed by the
  kernel.
* **Workers never print.** Their stdout and stderr are captured and shown only when a rank fails.
* **Under torchrun** (``labs.runtime.devices.under_torchrun``), each process runs ``fn`` once for its own rank and
  every process gets the full list of results; ``torchrun.py`` says how a rank or a node that dies is reported.
  RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT left in the environment without torchrun are ignored; a process group this
  process joined itself is refused with what to call (``torchrun.runs_in_place``).
"""
from __future__ import annotations

import contextlib
import ctypes
import datetime
import gc
import io
import multiprocessing as mp
import os
import pickle
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from multiprocessing.connection import wait

import torch
import torch.distributed as dist

from ..errors import InputError
from ..checks import MAX_RANKS
from .devices import default_backend, default_start_method, gpus_visible
from .failures import LaunchTimeout, RankFailed
from .torchrun import launch_in_place, runs_in_place

__all__ = ["LaunchTimeout", "MAX_RANKS", "RankFailed", "launch", "report"]

_PROGRESS_CHARS = 240
_FOLDER_PREFIX = "labs-launch-"
_progress = None  # (shared char array, rank) inside a worker


def report(text: str) -> None:
    """Record where this rank is (e.g. ``finished 1F2, waiting for 1B0``); shown if the launch times out."""
    if _progress is None:
        return
    array, rank = _progress
    data = text.encode()[:_PROGRESS_CHARS].ljust(_PROGRESS_CHARS, b"\0")
    array[rank * _PROGRESS_CHARS:(rank + 1) * _PROGRESS_CHARS] = data


def launch(fn, world_size: int = 4, args: tuple = (), kwargs: dict | None = None, timeout_s: float = 60.0,
           backend: str | None = None, start_method: str | None = None, threads_per_rank: int = 1) -> list:
    """Run ``fn(rank, *args, **kwargs)`` on ``world_size`` ranks; return the results in rank order.

    Raises InputError before starting anything for a bad world size, timeout or backend; RankFailed when a rank
    raises or dies; LaunchTimeout after ``timeout_s`` seconds, with each rank's last ``report``.
    """
    kwargs = kwargs or {}
    if not isinstance(world_size, int) or isinstance(world_size, bool) or world_size < 1:
        raise InputError(f"world_size must be a whole number >= 1, got {world_size!r}")
    if world_size > MAX_RANKS:
        raise InputError(f"world_size={world_size} is more than {MAX_RANKS} ranks: each rank is a process with its "
                         f"own copy of torch, and this launcher runs them all on this machine")
    if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or not timeout_s > 0 \
            or timeout_s == float("inf"):
        raise InputError(f"timeout_s is the seconds a run may take, a number > 0 (e.g. 60), got {timeout_s!r}")
    if runs_in_place(world_size):  # torchrun started this process (or it joined a group of world_size itself)
        return launch_in_place(fn, world_size, args, kwargs, timeout_s, backend)
    backend = backend or default_backend(world_size)
    if backend == "nccl" and gpus_visible() < world_size:
        raise InputError(f"NCCL needs one GPU per rank: {world_size} ranks but {gpus_visible()} GPU(s) visible "
                         f"(NCCL refuses two ranks on one GPU, 'Duplicate GPU detected'); use backend='gloo', "
                         f"which the ranks can share a GPU through, or launch at most {gpus_visible()} ranks")
    start_method = start_method or default_start_method()
    ctx = mp.get_context(start_method)
    if start_method == "fork":
        payload = (fn, args, kwargs)
    else:
        import cloudpickle  # sends notebook-defined functions by value
        payload = cloudpickle.dumps((fn, args, kwargs))
    _remove_stale_folders()
    folder = tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}{os.getpid()}-")
    progress = ctx.Array("c", _PROGRESS_CHARS * world_size, lock=False)
    processes, readers = [], []
    try:
        # Ctrl-C waits until every started process is on the list that the clean-up below stops: an interrupt
        # between a fork and its append would leave that rank behind.
        with _sigint_deferred():
            for rank in range(world_size):
                reader, writer = ctx.Pipe(duplex=False)
                process = ctx.Process(target=_worker, daemon=True, name=f"labs-rank-{rank}",
                                      args=(rank, world_size, os.path.join(folder, "store"), backend, timeout_s,
                                            payload, writer, progress, threads_per_rank))
                processes.append(process)
                process.start()
                writer.close()
                readers.append(reader)
        return _collect(processes, readers, progress, timeout_s)
    finally:
        _stop(processes)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _sigint_deferred():
    """Hold a Ctrl-C (SIGINT) that comes meanwhile and raise it on leaving; only the main thread gets signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        if callable(previous):
            previous(signal.SIGINT, None)
        else:
            raise KeyboardInterrupt


def _remove_stale_folders() -> None:
    """Remove the rendezvous folders of launches whose parent was killed (their names carry the parent's pid)."""
    root = tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        pid = name[len(_FOLDER_PREFIX):].split("-", 1)[0]
        if name.startswith(_FOLDER_PREFIX) and pid.isascii() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _collect(processes, readers, progress, timeout_s: float) -> list:
    deadline = time.monotonic() + timeout_s
    results: dict[int, object] = {}
    while len(results) < len(processes):
        left = deadline - time.monotonic()
        if left <= 0:
            raise LaunchTimeout(timeout_s, _read_progress(progress, len(processes)))
        pending = [r for r in range(len(processes)) if r not in results]
        waitables = [readers[r] for r in pending] + [processes[r].sentinel for r in pending]
        wait(waitables, timeout=min(left, 0.5))
        failed = None
        for rank in pending:  # read every rank that has answered, so that a failure knows who had finished
            dead = not processes[rank].is_alive()  # before reading: a result sent before death is then in the pipe
            message = _receive(readers[rank], rank)
            if message is None and dead:
                code = processes[rank].exitcode
                why = f"killed by signal {-code}" if code and code < 0 else f"exit code {code}"
                message = ("error", f"the process ended ({why}) without returning a result "
                                    f"(out of memory, os._exit, or a crash in native code)", "")
            if message is not None:
                status, value, output, exception = (tuple(message) + ("", ""))[:4]
                if status == "error":
                    failed = failed or (rank, value, output, exception)
                else:
                    results[rank] = value
        if failed:
            raise RankFailed(*failed, finished=sorted(results))
    return [results[r] for r in range(len(processes))]


def _receive(reader, rank: int):
    """The worker's (status, value, output), or None if it has sent nothing (yet, or ever: EOF)."""
    try:
        data = reader.recv_bytes() if reader.poll() else None
    except (EOFError, OSError):
        return None
    if data is None:
        return None
    try:
        return pickle.loads(data)
    except Exception as error:  # noqa: BLE001 - whatever the result's unpickling raises
        raise RankFailed(rank, f"rank {rank} returned a result that cannot be rebuilt in this process "
                               f"({type(error).__name__}: {error}): return plain data (numbers, strings, lists, "
                               f"dicts, tensors)") from None


def _read_progress(progress, world_size: int) -> list[str]:
    raw = bytes(progress[:])
    return [raw[r * _PROGRESS_CHARS:(r + 1) * _PROGRESS_CHARS].rstrip(b"\0").decode(errors="replace")
            for r in range(world_size)]


def _stop(processes) -> None:
    processes = [p for p in processes if p.pid is not None]  # started (an interrupted start may leave one unstarted)
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(timeout=1.0)
        if p.is_alive():
            p.kill()
            p.join(timeout=1.0)


def _die_with_parent() -> None:
    """Ask Linux to kill this worker if the parent (say, a restarted notebook kernel) goes away."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _worker(rank, world_size, store_path, backend, timeout_s, payload, writer, progress, threads):
    global _progress
    # A forked worker inherits the parent's heap (a notebook kernel's few hundred thousand objects). Freezing them
    # keeps every garbage-collection pass here to the worker's own objects: a full pass over the inherited heap costs
    # 140-200 ms (it writes to each object, copying the pages) and once landed inside a timed step (runtime.py).
    gc.freeze()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # forked while launch held Ctrl-C: take it as usual
    _die_with_parent()
    _progress = (progress, rank)
    captured = io.StringIO()
    sys.stdout = sys.stderr = captured
    try:
        fn, args, kwargs = payload if isinstance(payload, tuple) else __import__("cloudpickle").loads(payload)
        torch.set_num_threads(threads)
        if backend == "nccl":
            torch.cuda.set_device(rank)
        # Every group (the default one, dist.new_group's, init_device_mesh's) connects its ranks eagerly, and a rank
        # that had finished could exit while a slower one (asleep in the store's 10 ms poll on a busy core) was still
        # connecting to it: "Gloo connectFullMesh failed ... Connection closed by peer". torch's switch ends every
        # group's creation with a store barrier over all ranks (a barrier after fn would turn an unmatched send into
        # a hang). One core busy: 10 of 600 launches failed without it, none of 600 with it.
        os.environ.setdefault("TORCH_DIST_INIT_BARRIER", "1")
        store = dist.FileStore(store_path, world_size)
        # The process group outlives the parent's deadline a little, so a hang is reported by the parent with
        # every rank's progress rather than by one rank's gloo timeout.
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s + 5))
        dist.barrier()  # an aligned start for fn (the switch above already waited for every rank to connect)
        report("")
        result = fn(rank, *args, **kwargs)
        # Plain pickle copies tensors by value; multiprocessing's own pickler would pass them as shared-memory
        # handles that die with this process.
        writer.send_bytes(pickle.dumps(("ok", result, "", "")))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, whatever it is
        exception = "".join(traceback.format_exception_only(type(error), error))
        writer.send_bytes(pickle.dumps(("error", traceback.format_exc(), captured.getvalue(), exception)))
    finally:
        writer.close()
        if dist.is_initialized():
            dist.destroy_process_group()
