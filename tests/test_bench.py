"""The benchmark's torch.distributed.pipelining path runs the same paced stages (kept small here)."""
from labs.course.bench import compare, launch_time


def test_bench_compares_with_torch_pipelining():
    row = compare("1f1b", M=4, v=1, pace_ms=(2, 4), repeats=1)
    assert row["max_grad_error"] <= 1e-5
    assert row["torch_s"] >= row["simulated_s"] * 0.95  # torch's step cannot beat the paced simulation
    assert 0.5 < row["ours_over_torch"] < 2.0


def test_interleaved_bench_row_runs():
    row = compare("interleaved", M=4, v=2, pace_ms=(1, 2), repeats=1)
    assert row["torch_s"] > 0 and row["ours_s"] > 0


def test_launch_time_is_measured():
    assert 0 < launch_time(repeats=1) < 5
