"""torchrun across "machines" (two torchrun nodes on this machine), leftover distributed variables, one pace default.

A node that dies is SIGKILLed whole (its torchrun agent and its workers, which torchrun starts in sessions of their
own), as when a machine loses power. The nodes meet with torchrun's static rendezvous (``--master-addr``,
``--master-port``, ``--node-rank``): node 0's agent hosts the store, so this test can watch the ranks check in.
"""
import datetime
import inspect
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch.distributed as dist

import labs
import labs.course.environment
from labs.__main__ import main as cli_main
from labs.checks import DEFAULT_PACE_MS
from labs.errors import InputError
from labs.runtime.devices import leftover_distributed_env, under_torchrun

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
RUN = ["-m", "labs", "run", "--schedule", "1f1b", "-M", "8", "--batch-size", "16"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node(node_rank: int, port: int, run: list, env: dict | None = None, nproc: int = 1) -> subprocess.Popen:
    command = TORCHRUN + ["--nnodes", "2", "--node-rank", str(node_rank), "--nproc-per-node", str(nproc),
                          "--master-addr", "127.0.0.1", "--master-port", str(port)] + run + ["-P", str(2 * nproc)]
    command += ["--layers", str(2 * nproc)]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONPATH": ROOT, **(env or {})})


def _tree(pid: int) -> list[int]:
    """pid and everything under it (torchrun starts each worker in a session of its own)."""
    children: dict = {}
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as handle:
                children.setdefault(int(handle.read().rsplit(")", 1)[1].split()[1]), []).append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def _kill_node(node: subprocess.Popen) -> None:
    for pid in _tree(node.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_for_checkins(port: int, ranks: int, limit_s: float = 90.0) -> None:
    """Until every rank has checked in on node 0's store (labs.runtime.torchrun writes labs/<run>/joined/<rank>)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=datetime.timedelta(seconds=5))
            keys = [f"labs/none/0/joined/{r}" for r in range(ranks)]  # run id "none": the static rendezvous'
            while time.monotonic() < deadline:
                if store.check(keys):
                    return
                time.sleep(0.05)
        except Exception:  # noqa: BLE001 - the agent has not opened its store yet
            time.sleep(0.2)
    raise AssertionError("the ranks never checked in")


def test_a_node_killed_mid_run_stops_the_other_in_seconds_naming_the_rank():
    """Two nodes of two ranks: when node 1 dies, rank 1 sees it first (it sends to rank 2) while rank 0 still waits
    for rank 1: both name ranks 2 and 3, whose processes ended, and not rank 0 or 1, which were alive."""
    port = _free_port()
    run = RUN + ["--pace-ms", "100,200", "--timeout", "60"]  # about 3.3 s per step, 4 steps
    survivor, victim = _node(0, port, run, nproc=2), _node(1, port, run, nproc=2)
    try:
        _wait_for_checkins(port, 4)
        time.sleep(1.5)  # the group is formed and the warm-up step runs
        _kill_node(victim)
        killed = time.monotonic()
        output, _ = survivor.communicate(timeout=60)
        stopped_s = time.monotonic() - killed
    finally:
        _kill_node(survivor)
        _kill_node(victim)
    assert survivor.returncode != 0, output
    assert stopped_s < 15, (stopped_s, output)
    errors = sorted(line for line in output.splitlines() if line.startswith("error: "))
    assert len(errors) == 2, output  # the surviving node's two ranks: one line each, the course's
    for rank, line in enumerate(errors):
        assert line.startswith(f"error: rank {rank}: stopped because rank(s) [2, 3] (torchrun node 1) ended "
                               f"without a word"), output
    assert os.path.join(ROOT, "labs") not in output, output  # no worker traceback (torchrun prints its own summary)


def test_a_node_that_dies_during_start_up_is_named_after_the_start_up_limit():
    """Node 1 dies as soon as torchrun spawned its worker (rendezvous done, its rank not checked in): node 0 waits
    LABS_START_TIMEOUT_S (here 3 s), not the run's timeout (60 s), and names the rank that never joined."""
    port = _free_port()
    run = RUN + ["--pace-ms", "off", "--timeout", "60"]
    survivor, victim = _node(0, port, run, {"LABS_START_TIMEOUT_S": "3"}), _node(1, port, run)
    try:
        deadline = time.monotonic() + 90
        while len(_tree(victim.pid)) < 2 and time.monotonic() < deadline:  # the agent and its first worker
            time.sleep(0.02)
        _kill_node(victim)
        killed = time.monotonic()
        output, _ = survivor.communicate(timeout=90)
        waited_s = time.monotonic() - killed
    finally:
        _kill_node(survivor)
        _kill_node(victim)
    assert survivor.returncode != 0 and waited_s < 30, (waited_s, output)
    assert "error: rank 0: ranks [1] did not join within 3 s of start-up" in output, output
    assert os.path.join(ROOT, "labs") not in output, output


def test_a_rank_that_raises_is_named_by_the_others(tmp_path):
    """Rank 1's own error surfaces there with its traceback (as in a notebook); rank 0, left waiting for rank 1's
    message, says that rank 1 raised and what, instead of gloo's "Connection closed by peer"."""
    job = tmp_path / "job.py"
    job.write_text(
        "import sys, time, torch, torch.distributed as dist, labs\n"
        "def fn(rank):\n"
        "    if rank == 1:\n"
        "        time.sleep(0.5)\n"
        "        raise ValueError('planted on rank 1')\n"
        "    dist.recv(torch.zeros(1), src=1)\n"
        "try:\n"
        "    labs.launch(fn, world_size=2, timeout_s=60)\n"
        "except labs.RankFailed as error:\n"
        "    print(f'error: {error}', flush=True)\n"
        "    sys.exit(1)\n")
    done = subprocess.run(TORCHRUN + ["--standalone", "--nproc-per-node", "2", str(job)], cwd=ROOT, timeout=120,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "error: rank 1 failed:\nTraceback" in output and "ValueError: planted on rank 1" in output, output
    assert "error: rank 0: stopped because rank 1 raised ValueError: planted on rank 1" in output, output


@pytest.fixture
def leftover_env(monkeypatch):
    """What tutorials set by hand before dist.init_process_group, without torchrun."""
    for key in ("TORCHELASTIC_RUN_ID", "GROUP_RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    values = {"RANK": "1", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def test_leftover_variables_are_not_torchrun_and_the_run_goes_on(leftover_env):
    assert not under_torchrun() and leftover_distributed_env() == leftover_env
    run = labs.run_pipeline("1f1b", P=2, M=2, layers=2, batch_size=8, pace_ms=(1, 2), timeout_s=30)
    assert run.P == 2 and run.max_grad_error <= 1e-5
    assert "torchrun did not start this process" in labs.course.environment.explain()


def test_a_group_joined_by_hand_is_refused_with_what_to_call(leftover_env, tmp_path):
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        with pytest.raises(InputError, match=r"already joined a process group of 1 rank.*destroy_process_group"):
            labs.run_pipeline("1f1b", P=2, M=2, layers=2, batch_size=8, pace_ms=(1, 2), timeout_s=30)
        assert "destroy_process_group" in labs.course.environment.explain()
    finally:
        dist.destroy_process_group()
    assert labs.launch(lambda rank: rank * 10, world_size=2, timeout_s=30) == [0, 10]  # after the call it runs


def _stated(text: str, pattern: str) -> list[tuple[float, ...]]:
    return [tuple(float(x) for x in re.split(r",\s*", m)) for m in re.findall(pattern, text)]


def _cli_defaults(monkeypatch) -> dict:
    """The pace each CLI command would use when none is given, read from its parsed arguments (nothing runs)."""
    import argparse
    seen, parse = {}, argparse.ArgumentParser.parse_args

    def parse_and_stop(self, argv=None, namespace=None):
        args = parse(self, argv, namespace)
        seen[args.command] = args.pace_ms
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_and_stop)
    for command in ("run", "bench"):
        with pytest.raises(SystemExit):
            cli_main([command])
    return seen


def test_one_pace_default_stated_once(monkeypatch):
    assert inspect.signature(labs.run_pipeline).parameters["pace_ms"].default == DEFAULT_PACE_MS == (10, 20)
    assert _cli_defaults(monkeypatch) == {"run": DEFAULT_PACE_MS, "bench": DEFAULT_PACE_MS}
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    contributing = open(os.path.join(ROOT, "CONTRIBUTING.md"), encoding="utf-8").read()
    assert _stated(readme, r"default(?: pace)? is (\d+,\d+) ms") == [DEFAULT_PACE_MS]
    assert _stated(contributing, r"`pace_ms=\((\d+, \d+)\)`, the default") == [DEFAULT_PACE_MS]
    # negative control: a sentence with the API's old default is read as a different default
    assert _stated("The default is 5,10 ms.", r"default(?: pace)? is (\d+,\d+) ms") == [(5.0, 10.0)]
