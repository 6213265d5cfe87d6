"""The launcher: real processes, results in rank order, fast failures, timeouts, no leftovers, no clashes."""
import os
import signal
import threading
import time

import pytest
import torch
import torch.distributed as dist

import labs
from labs.runtime.launcher import LaunchTimeout, RankFailed, launch


def _children() -> list[int]:
    """Our child processes, except multiprocessing's resource tracker (one per parent, started by spawn)."""
    me = str(os.getpid())
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                is_child = f.read().rsplit(")", 1)[1].split()[1] == me
            with open(f"/proc/{pid}/cmdline") as f:
                if is_child and "resource_tracker" not in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def ring(rank, payload):
    world = dist.get_world_size()
    received = torch.zeros(1)
    request = dist.irecv(received, (rank - 1) % world)
    dist.send(torch.tensor([float(rank * payload)]), (rank + 1) % world)
    request.wait()
    return os.getpid(), received.item()


def test_results_come_back_in_rank_order_from_separate_processes():
    results = launch(ring, world_size=4, args=(10,))
    assert [value for _, value in results] == [30.0, 0.0, 10.0, 20.0]
    assert len({pid for pid, _ in results} | {os.getpid()}) == 5


def test_launching_four_ranks_that_do_nothing_takes_under_a_second():
    launch(lambda rank: rank, world_size=4)  # the first launch pays for lazy imports
    started = time.perf_counter()
    assert launch(lambda rank: rank, world_size=4) == [0, 1, 2, 3]
    assert time.perf_counter() - started < 1.0


def test_a_closure_runs_under_spawn_too():
    offset = 7
    assert launch(lambda rank: rank + offset, world_size=2, start_method="spawn", timeout_s=120) == [7, 8]


def _fail_on_rank_2(rank):
    if rank == 2:
        raise ValueError("rank two is unhappy")
    dist.recv(torch.zeros(1), (rank + 1) % 4)  # the others block forever


def test_a_failing_rank_surfaces_in_seconds_with_rank_and_traceback_and_nothing_is_left():
    started = time.perf_counter()
    with pytest.raises(RankFailed) as error:
        launch(_fail_on_rank_2, world_size=4, timeout_s=60)
    assert time.perf_counter() - started < 5
    assert error.value.rank == 2
    assert "ValueError: rank two is unhappy" in str(error.value)
    assert "_fail_on_rank_2" in error.value.worker_traceback
    assert _children() == []


def _stuck(rank):
    labs.report(f"rank {rank} waiting on 0F{rank}")
    time.sleep(600)


def test_a_hung_run_fails_at_its_timeout_naming_each_rank_progress():
    started = time.perf_counter()
    with pytest.raises(LaunchTimeout) as error:
        launch(_stuck, world_size=3, timeout_s=2)
    assert time.perf_counter() - started < 5
    assert "rank 1: rank 1 waiting on 0F1" in str(error.value)
    assert _children() == []


def test_a_crashed_rank_without_a_result_is_reported():
    with pytest.raises(RankFailed, match="exit code 3"):
        launch(lambda rank: os._exit(3) if rank == 1 else time.sleep(30), world_size=2, timeout_s=20)
    assert _children() == []


def _interrupt_once_ranks_run(sent: list, world_size: int) -> None:
    """Ctrl-C, as a notebook's interrupt sends it, once every rank is running: however slow a busy machine is to
    start them, the interrupt then lands in the middle of a run, which is what the test is about."""
    deadline = time.monotonic() + 120
    while len(_children()) < world_size and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    sent.append(time.monotonic())
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C raises KeyboardInterrupt, as in a notebook's kernel, whatever handler an earlier test left installed
    (in the whole suite one did: the interrupt was then ignored and the run went on to its timeout)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_keyboard_interrupt_leaves_no_process_behind(ctrl_c_raises):
    sent: list = []
    thread = threading.Thread(target=_interrupt_once_ranks_run, args=(sent, 2), daemon=True)
    thread.start()
    with pytest.raises(KeyboardInterrupt):
        launch(_stuck, world_size=2, timeout_s=150)
    stopped = time.monotonic()
    assert sent and stopped - sent[0] < 5, "the interrupt did not stop the run promptly"
    assert _children() == []


def test_keyboard_interrupt_while_ranks_start_leaves_no_process_behind(ctrl_c_raises):
    timer = threading.Timer(0.01, lambda: signal.pthread_kill(threading.main_thread().ident, signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        timer.start()
        launch(_stuck, world_size=4, timeout_s=150)
    assert _children() == []


def _hold(rank, seconds):
    time.sleep(seconds)
    return dist.get_world_size()


def test_two_launches_at_once_do_not_clash():
    results = {}
    threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, launch(_hold, 2, args=(0.5,))))
               for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {0: [2, 2], 1: [2, 2]}


def test_workers_never_print_but_their_output_is_shown_on_failure():
    def noisy(rank):
        print(f"hello from {rank}")
        if rank == 1:
            raise RuntimeError("after printing")
    with pytest.raises(RankFailed, match="hello from 1"):
        launch(noisy, world_size=2)


def test_bad_world_size():
    with pytest.raises(ValueError, match="world_size must be"):
        launch(lambda rank: rank, world_size=0)


def _time_in_new_group(rank, barrier):
    """Rank 0 makes its group late; rank 1 (not a member) reports how long its own new_group call took."""
    if barrier is not None:
        os.environ["TORCH_DIST_INIT_BARRIER"] = barrier  # read by torch at every group creation
    if rank == 0:
        time.sleep(0.5)
    start = time.monotonic()
    dist.new_group([0])
    return time.monotonic() - start


def test_no_rank_leaves_a_group_creation_before_every_rank_has_made_it():
    """The start-up race ("Gloo connectFullMesh failed ... Connection closed by peer" on a busy machine: a rank that
    left new_group and exited while a slower one was still connecting) cannot happen: every group a launch's ranks
    make, a mesh's sub-groups included, ends with a barrier over all ranks. Rank 1 waits the 0.5 s rank 0 spends
    before creating the group; the negative control switches torch's barrier off and rank 1 leaves at once."""
    waited = launch(_time_in_new_group, world_size=2, args=(None,), timeout_s=60)[1]
    assert waited >= 0.3, waited
    unguarded = launch(_time_in_new_group, world_size=2, args=("0",), timeout_s=60)[1]
    assert unguarded < 0.2, unguarded
