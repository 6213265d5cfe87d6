"""Bad input stops before any process starts, at once, with a message that says what to change (issue 7, part 4)."""
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time

import pytest

import labs
from labs import Action, Costs, ScheduleError, run_pipeline, validate
from labs.errors import InputError
from labs.runtime import RankFailed, launch


def _no_launch(*args, **kwargs):
    raise AssertionError("a process was about to start")


@pytest.mark.parametrize("kwargs,message", [
    (dict(batch_size=0), "batch_size must be a whole number >= 1"),
    (dict(pace_ms=(-1, 2)), r"pace_ms\[0\] must be >= 0"),
    (dict(pace_ms=(math.nan, 2)), r"pace_ms\[0\] must be a finite number"),
    (dict(pace_ms="fast"), "pace_ms is \\(forward_ms, backward_ms\\) per layer"),
    (dict(timeout_s=0), "timeout_s \\(seconds\\) must be > 0"),
    (dict(timeout_s=-1), "timeout_s \\(seconds\\) must be > 0"),
    (dict(M="2"), "write 2, not '2'"),
    (dict(width=0), "width must be a whole number >= 1"),
    (dict(P=1000), "P=1000 is more than this machine can run: at most 64"),
    (dict(P=10**5), "at most 64"),
    (dict(M=10**8), "M=100000000 is more than this machine can run: at most 4096"),
    (dict(steps=0), "steps must be a whole number >= 1"),
    (dict(schedule="zb-h1", pace_ms=(10, 10, 10, 10)), "for a split backward, e.g"),
    (dict(schedule=[["0F0", "0F1", "0B0", "0B1"], ["1F1", "1F0", "1B0", "1B1"]], transport="in_order"),
     "1F1 on rank 1 would receive 0F0's message"),
])
def test_run_pipeline_refuses_at_once_without_starting_a_process(monkeypatch, kwargs, message):
    monkeypatch.setattr(labs.pipeline, "launch", _no_launch)
    started = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        run_pipeline(**kwargs)
    assert time.perf_counter() - started < 1.0


def test_a_hand_written_schedule_with_shifted_micro_batches_is_refused_naming_its_rank(monkeypatch):
    monkeypatch.setattr(labs.pipeline, "launch", _no_launch)
    with pytest.raises(ScheduleError, match=r"^rank 1 runs 1F2, but the stages run 2 micro-batches"):
        run_pipeline([["0F0", "0F1", "0B0", "0B1"], ["1F1", "1F2", "1B1", "1B2"]], layers=4, batch_size=8)


def test_cuda_without_a_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(labs.pipeline, "launch", _no_launch)
    monkeypatch.setattr(sys.modules["labs.runtime.devices"], "gpus_visible", lambda: 0)
    with pytest.raises(InputError, match="torch sees no CUDA GPU on this machine: use device='cpu'"):
        run_pipeline(device="cuda")


@pytest.mark.parametrize("schedule,message", [
    ([5], "rank 0's entry is 5: each rank needs a list of actions"),
    ([None], "rank 0's entry is None"),
    ([[Action(0, "X", 0)]], "kind is one of F, I, W, B"),
    ([[Action(0.0, "F", 0), Action(0, "B", 0)]], "stage and micro-batch are whole numbers"),
    (["\u0662F\u0665"], "cannot read action"),  # Arabic-Indic digits: not 2F5
    ([["1F0", "1B0"]], "0F0 is missing: no rank runs stage 0"),
    # micro-batches numbered from 1 on one rank: the out-of-range action, on the rank that runs it (M not given)
    ([["0F0", "0F1", "0B0", "0B1"], ["1F1", "1F2", "1B1", "1B2"]], r"^rank 1 runs 1F2, but the stages run 2 "
     r"micro-batches each \(numbered 0 to 1\): renumber rank 1's"),
    ([["0F1", "0F2", "0B1", "0B2"], ["1F0", "1F1", "1B0", "1B1"]], r"^rank 0 runs 0F2, but the stages run 2"),
    ([["0F0", "0F1", "0B0", "0B1"], ["1F0", "1B0"]], r"^1F1 is missing: rank 1 never runs it"),  # really missing
])
def test_validate_says_what_is_wrong(schedule, message):
    with pytest.raises(ScheduleError, match=message):
        validate(schedule)


@pytest.mark.parametrize("costs,message", [
    (dict(forward_s=-1), "finite numbers >= 0"), (dict(backward_s=math.nan), "finite numbers >= 0"),
    (dict(link_s=-0.5), "finite numbers >= 0"),
])
def test_bad_costs_are_refused(costs, message):
    with pytest.raises(ValueError, match=message):
        Costs(**costs)


def test_costs_with_the_wrong_number_of_stages():
    with pytest.raises(ValueError, match="has 2 entries for 4 stages"):
        labs.simulate(labs.gpipe(4, 2), Costs(forward_s=[1, 2]))


@pytest.mark.parametrize("kwargs,message", [(dict(timeout_s=0), "timeout_s is the seconds"),
                                            (dict(world_size=65), "more than 64 ranks")])
def test_launch_refuses_before_starting(kwargs, message):
    with pytest.raises(ValueError, match=message):
        launch(lambda rank: rank, **{"world_size": 2, **kwargs})


class _BreaksOnLoad:
    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise RuntimeError("cannot be rebuilt here")


def test_a_result_that_cannot_be_unpickled_names_its_rank():
    pickle.dumps(_BreaksOnLoad())  # pickles fine in the worker; fails only when the parent loads it
    with pytest.raises(RankFailed, match="rank 1 returned a result that cannot be rebuilt") as error:
        launch(lambda rank: _BreaksOnLoad() if rank == 1 else rank, world_size=2)
    assert error.value.rank == 1


def test_a_killed_parents_rendezvous_folder_is_cleaned_on_the_next_launch():
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tempfile.mkdtemp(prefix=f"labs-launch-{int(dead.stdout)}-")
    mine = tempfile.mkdtemp(prefix=f"labs-launch-{os.getpid()}-")  # a live parent's folder stays
    launch(lambda rank: rank, world_size=2)
    assert not os.path.exists(stale) and os.path.exists(mine)
    os.rmdir(mine)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "labs", *args], capture_output=True, text=True, timeout=60)


def _main(capsys, monkeypatch, *args) -> tuple[int, str]:
    """``python -m labs ARGS`` in this process (a fresh interpreter costs ~2 s of imports per call; one test below
    keeps the real command): the exit code and what it wrote to stderr. No rank may start."""
    from labs.__main__ import main
    monkeypatch.setattr(labs.pipeline, "launch", _no_launch)
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    return code, capsys.readouterr().err


CLI_REFUSALS = [
    (["run", "--plot", "/no/such/folder/t.png"], "the folder /no/such/folder does not exist"),
    (["grade", "notebooks/04_1f1b.ipynb", "--json", "/no/such/folder/s.json"], "does not exist"),
    (["grade", "no_such_notebook.ipynb"], "no such file"),
    (["grade", "labs/checks.py"], "is not a notebook"),
    (["run", "-P", "\u0662"], "digits 0-9"),
    (["run", "-P", "100000"], "at most 64"),
    (["run", "--pace-ms=-1,2"], "must be >= 0"),
]


@pytest.mark.parametrize("args,message", CLI_REFUSALS)
def test_cli_refuses_before_running(capsys, monkeypatch, args, message):
    started = time.perf_counter()
    code, err = _main(capsys, monkeypatch, *args)
    assert code == 2 and message in err, err[-800:]
    assert "Traceback" not in err and time.perf_counter() - started < 5


def test_the_real_command_refuses_with_exit_code_2():
    """One refusal through a real ``python -m labs`` (the interpreter, the module's entry point, the exit code)."""
    result = _cli(*CLI_REFUSALS[-1][0])
    assert result.returncode == 2 and CLI_REFUSALS[-1][1] in result.stderr, result.stderr[-800:]
    assert "Traceback" not in result.stderr


def test_grade_refuses_a_non_notebook_and_an_unknown_number(capsys, monkeypatch, tmp_path):
    (tmp_path / "03_gpipe.ipynb").write_text("not json")
    (tmp_path / "99_extra.ipynb").write_text(json.dumps({"cells": []}))
    assert "not a readable notebook" in _main(capsys, monkeypatch, "grade", str(tmp_path / "03_gpipe.ipynb"))[1]
    assert "cannot tell which course notebook" in _main(capsys, monkeypatch, "grade", str(tmp_path / "99_extra.ipynb"))[1]
