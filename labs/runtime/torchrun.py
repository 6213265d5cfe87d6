"""``labs.launch`` in processes someone else started: under torchrun (one or several machines), or beside a process
group this process already joined.

Under torchrun each process runs ``fn`` once for its own rank and every process gets the whole list of results.
What this module adds to torchrun, so that a run across machines fails like a run in a notebook (in seconds, once,
naming the rank):

* **Start-up.** Before joining the process group every rank checks in on torchrun's own store (``MASTER_ADDR``,
  ``MASTER_PORT``) and waits at most ``LABS_START_TIMEOUT_S`` seconds (30 by default, the run's timeout if
  shorter) for the others. A node that died during start-up is then named (``ranks [2, 3] did not join ...``)
  instead of every other rank waiting the run's whole timeout inside ``init_process_group``. The process group
  keeps the run's timeout for its operations.
* **During the run.** A rank whose own code raises surfaces as ``RankFailed`` with its traceback (as in a notebook).
  A rank that loses a peer (gloo: "Connection closed by peer") writes that in the store, waits a moment for the
  other ranks' word, and raises ``RanksLost`` naming who stopped: the rank that raised, or the ranks that ended
  without a word (killed, or their machine is gone), or the node that hosts the store. ``python -m labs`` prints
  one line per rank, ``error: rank R: ...``. Before gathering the results, gloo runs a monitored barrier, which
  names the ranks that never arrive.

Not ours to change: a node that dies before torchrun's rendezvous completes leaves the others waiting for the
rendezvous' ``join_timeout`` (600 s; ``--rdzv-conf join_timeout=N``), and the death of the node that hosts the
rendezvous store ends every other node's torchrun at once (README, "Several machines").
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import socket
import threading
import time
import traceback

import torch
import torch.distributed as dist

from ..errors import InputError
from .devices import gpus_visible, under_torchrun
from .failures import RankFailed

__all__ = ["RanksLost", "launch_in_place", "runs_in_place", "start_timeout_s"]

_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Connection refused",
         "failed to recv", "Failed to recv", "Timed out", "timed out", "Socket Timeout", "monitoredBarrier")


class RanksLost(RankFailed):
    """Under torchrun: this rank stopped because others did (``lost``: the ranks that stopped answering)."""

    def __init__(self, rank: int, message: str, detail: str = "", lost: list | tuple = ()):
        self.rank, self.worker_traceback, self.output, self.exception = rank, detail, "", message
        self.finished, self.hint, self.lost = [], "", list(lost)
        RuntimeError.__init__(self, f"rank {rank}: {message}")


def start_timeout_s(timeout_s: float) -> float:
    """Seconds a rank waits for the others to start: ``LABS_START_TIMEOUT_S`` (default 30), at most ``timeout_s``."""
    text = os.environ.get("LABS_START_TIMEOUT_S", "30")
    try:
        limit = float(text)
    except ValueError:
        raise InputError(f"LABS_START_TIMEOUT_S is a number of seconds (e.g. 30), got {text!r}") from None
    if not limit > 0:
        raise InputError(f"LABS_START_TIMEOUT_S is a number of seconds > 0, got {text!r}")
    return min(limit, timeout_s)


def runs_in_place(world_size: int) -> bool:
    """Whether ``launch`` runs ``fn`` in this process for its own rank (torchrun started it, or it already joined a
    process group of ``world_size`` ranks) rather than starting ``world_size`` ranks of its own.

    Raises InputError when this process joined a process group of another size without torchrun (a notebook that
    called ``dist.init_process_group`` itself): the ranks launch would start cannot join a second default group.
    RANK, WORLD_SIZE, MASTER_ADDR or MASTER_PORT left in the environment without torchrun are ignored."""
    if under_torchrun():
        return True
    if not (dist.is_available() and dist.is_initialized()):
        return False
    if dist.get_world_size() == world_size and world_size > 1:
        return True
    raise InputError(
        f"this process already joined a process group of {dist.get_world_size()} rank(s) (backend "
        f"{dist.get_backend()}), without torchrun: dist.init_process_group(...) was called here. labs.launch starts "
        f"its own {world_size} ranks, and they cannot join a second default group. Call "
        f"torch.distributed.destroy_process_group() first (or restart the kernel); to use your own processes, start "
        f"them with torchrun --nproc-per-node {world_size}")


def _store(timeout_s: float):
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    return dist.TCPStore(host, port, is_master=False, timeout=datetime.timedelta(seconds=timeout_s)), f"{host}:{port}"


def _key(kind: str, rank) -> str:
    run = f"{os.environ.get('TORCHELASTIC_RUN_ID', 'run')}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    return f"labs/{run}/{kind}/{rank}"


def _join_all(store, where: str, rank: int, world_size: int, limit_s: float) -> None:
    """Check in, then wait at most ``limit_s`` for every rank's check-in; RanksLost names the ranks that did not."""
    keys = [_key("joined", r) for r in range(world_size)]
    started = time.monotonic()
    try:
        store.set(keys[rank], f"{os.environ.get('GROUP_RANK', '?')} {socket.gethostname()}")
        while not store.check(keys):
            if time.monotonic() - started > limit_s:
                missing = [r for r, key in enumerate(keys) if not store.check([key])]
                raise RanksLost(rank, f"ranks {missing} did not join within {limit_s:g} s of start-up (rank {rank} "
                                      f"waited for them): the torchrun node(s) that run them died during start-up or "
                                      f"were never started; start every node with the same --nnodes and "
                                      f"--rdzv-endpoint (LABS_START_TIMEOUT_S sets this wait)", lost=missing)
            time.sleep(0.05)
    except RanksLost:
        raise
    except Exception as error:  # noqa: BLE001 - the store's host is gone
        raise RanksLost(rank, f"lost torchrun's store at {where} during start-up ({_first_line(error)}): the node that "
                              f"hosts the rendezvous died") from None


def _first_line(error: BaseException) -> str:
    """The exception's type and first sentence (gloo's messages go on with advice meant for its own logs)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0].split('. ')[0][:240] if text else ''}"


class _Terminated(BaseException):
    """torchrun's agent sent SIGTERM: another rank on this node failed and the agent is stopping its workers."""


def _raise_terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: say why, then end (the agent SIGKILLs at 30 s)
    raise _Terminated()


@contextlib.contextmanager
def _sigterm_raises():
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_BEAT_S = 0.5  # a rank's heartbeat period in the store, once it has checked in


@contextlib.contextmanager
def _heartbeat(rank: int):
    """Count this rank's heartbeats in torchrun's store (its own client, a daemon thread) while the block runs: the
    roll call tells a rank whose process ended (no beat) from one that is alive but waiting (still beating)."""
    stop = threading.Event()

    def beat():
        try:
            store, _ = _store(5.0)
            while not stop.is_set():
                store.add(_key("beats", rank), 1)
                stop.wait(_BEAT_S)
        except Exception:  # noqa: BLE001 - the store is gone: the roll call will say so
            return

    thread = threading.Thread(target=beat, name="labs-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def _roll_call(store, where: str, rank: int, world_size: int, word: str) -> tuple[str, list]:
    """Say ``word`` in the store, listen for three heartbeat periods, and name who stopped the run: a rank that raised,
    else the ranks whose processes ended without a word (no word, no heartbeat); with those ranks. The first rank to
    find out leaves its finding in the store, so ranks that notice later (they waited on this one) need not listen."""
    try:
        store.set(_key("stopped", rank), word)
        if store.check([_key("finding", "all")]):
            found = json.loads(store.get(_key("finding", "all")))
            return found["why"], found["ended"]
        why, ended = _listen(store, world_size)
        if ended or why.startswith("rank "):
            store.set(_key("finding", "all"), json.dumps({"why": why, "ended": ended}))
        return why, ended
    except Exception as error:  # noqa: BLE001 - the store went with its node
        return (f"torchrun's store at {where} is gone ({_first_line(error)}): the node that hosts the rendezvous "
                f"(--rdzv-endpoint) stopped, so every node stops"), []


def _listen(store, world_size: int) -> tuple[str, list]:
    """Listen for three heartbeat periods: who raised, whose process ended without a word."""
    beats = [store.add(_key("beats", r), 0) for r in range(world_size)]
    said: dict = {}
    listen_until = time.monotonic() + 3 * _BEAT_S
    while True:
        for r in range(world_size):
            if r not in said and store.check([_key("stopped", r)]):
                said[r] = store.get(_key("stopped", r)).decode(errors="replace")
        if time.monotonic() > listen_until:
            break
        time.sleep(0.1)
    ended = [r for r in range(world_size) if r not in said and store.add(_key("beats", r), 0) == beats[r]]
    nodes = {r: store.get(_key("joined", r)).decode().split()[0] for r in range(world_size)}
    raised = {r: w[len("raised "):] for r, w in said.items() if w.startswith("raised ")}
    if raised:
        r = min(raised)
        return f"rank {r} raised {raised[r]} (its traceback is in the output of torchrun node {nodes[r]})", []
    if ended:
        hosts = sorted({nodes[r] for r in ended})
        return (f"rank(s) {ended} (torchrun node{'s' * (len(hosts) > 1)} {', '.join(hosts)}) ended without a word: "
                f"their processes were killed, or their machine is gone"), ended
    return ("no rank ended or raised: a rank is stuck waiting (a send or receive without its partner?) or the "
            "network between the nodes is down"), []


def _is_lost(error: BaseException) -> bool:
    """A peer went away (gloo's connection errors and timeouts, torch's DistError), not this rank's own mistake."""
    return isinstance(error, (_Terminated, dist.DistError)) or any(k in str(error) for k in _LOST)


def launch_in_place(fn, world_size: int, args: tuple, kwargs: dict, timeout_s: float, backend: str | None) -> list:
    """``fn(rank, *args, **kwargs)`` once in this process, for its own rank; every rank gets all results.

    Raises InputError if torchrun started another number of processes; RankFailed when this rank's ``fn`` raises;
    RanksLost when another rank or node stopped (see the module's docstring); timeouts are ``timeout_s``."""
    env_world = int(os.environ["WORLD_SIZE"]) if under_torchrun() else dist.get_world_size()
    if env_world != world_size:
        raise InputError(f"torchrun started {env_world} processes but launch asked for world_size={world_size}: "
                         f"run torchrun --nproc-per-node {world_size} (or pass world_size={env_world})")
    deadline = time.monotonic() + timeout_s
    store = where = None
    joined = dist.is_initialized()
    rank = dist.get_rank() if joined else int(os.environ["RANK"])
    if not joined:
        limit = start_timeout_s(timeout_s)
        try:
            store, where = _store(min(limit, 10.0))
        except Exception as error:  # noqa: BLE001 - nobody listens at MASTER_ADDR:MASTER_PORT
            raise RanksLost(rank, f"cannot reach torchrun's store ({_first_line(error)})") from None
        _join_all(store, where, rank, world_size, limit)
    with _sigterm_raises(), (_heartbeat(rank) if store is not None else contextlib.nullcontext()):
        try:
            if not joined:  # inside: a peer that dies while the group forms is reported like one that dies later
                local_rank = int(os.environ.get("LOCAL_RANK", 0))
                backend = backend or ("nccl" if gpus_visible() > local_rank and dist.is_nccl_available() else "gloo")
                if backend == "nccl":
                    torch.cuda.set_device(local_rank)
                dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
            result = fn(rank, *args, **kwargs)
            results = [None] * world_size
            if dist.get_backend() == "gloo":  # names the ranks that never arrive, before the gather waits on them
                left = max(deadline - time.monotonic(), 5.0)
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=left), wait_all_ranks=True)
            dist.all_gather_object(results, result)
            return results
        except (Exception, _Terminated) as error:  # noqa: BLE001 - this rank's own error, or a peer that went away
            detail = traceback.format_exc()
            if not _is_lost(error):
                if store is not None:
                    with contextlib.suppress(Exception):  # the others' roll call names this rank and why
                        store.set(_key("stopped", rank), f"raised {_first_line(error)}")
                raise RankFailed(rank, detail, "", "".join(traceback.format_exception_only(type(error), error))) \
                    from None
            seen = "SIGTERM from its torchrun agent" if isinstance(error, _Terminated) else _first_line(error)
            if store is None:
                raise RanksLost(rank, f"another rank stopped answering ({seen})", detail) from None
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the roll call takes 1.5 s; then say it
            why, silent = _roll_call(store, where, rank, world_size, "stopped: " + seen)
            raise RanksLost(rank, f"stopped because {why} (this rank saw: {seen})", detail, silent) from None
