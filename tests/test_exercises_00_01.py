"""Notebooks 00 and 01: graded scores tell right from nearly right, stubs score 0, and the verdicts' claims about
rings hold on real ranks (3-rank rings: about 5 s)."""
from __future__ import annotations

import random

import pytest
import torch
import torch.distributed as dist

import labs
from labs.exercises import nb00, nb01
from labs.grading import plain


def _graded(module, name):
    return next(g for g in module.GRADED if g.name == name)


def test_00_hidden_world_sizes_are_drawn_never_the_shown_one_and_include_an_odd_one():
    graded = _graded(nb00, "ring_pass")
    for seed in range(30):
        sizes = [n for (n,) in graded.cases(random.Random(seed))]
        assert len(set(sizes)) == 3 and not set(sizes) & set(nb00.SHOWN_WORLD_SIZES)
        assert any(n % 2 for n in sizes if n > 2) and sum(n > 2 for n in sizes) >= 2
    assert len({tuple(graded.cases(random.Random(seed))) for seed in range(30)}) > 5


@pytest.mark.parametrize("wrong", sorted(nb00.WRONG))
def test_00_plausible_wrong_rings_score_at_most_one_case_in_three(wrong):
    graded = _graded(nb00, "ring_pass")
    for seed in range(10):
        cases = graded.cases(random.Random(seed))
        fraction, message = graded.score(cases, [nb00.WRONG[wrong](n) for (n,) in cases])
        assert fraction <= 1 / 3 + 1e-9, (wrong, cases, fraction)
        assert "ranks:" in message


def test_00_right_reports_score_full_marks():
    graded = _graded(nb00, "ring_pass")
    cases = graded.cases(random.Random(4))
    right = [[{"result": nb00.ring_tensor((r - 1) % n).tolist(), "sent": 1, "received": 1} for r in range(n)]
             for (n,) in cases]
    assert graded.score(cases, right) == (1.0, "all 3 cases passed")


def _constant_stub(rank, world_size):
    return 0.0


def _parity_ring(rank, world_size):
    """Blocking sends, even ranks first: no deadlock for odd world sizes either (notebook 00's prose)."""
    mine, received = nb00.ring_tensor(rank), torch.empty(4)
    right, left = (rank + 1) % world_size, (rank - 1) % world_size
    if rank % 2 == 0:
        dist.send(mine, dst=right)
        dist.recv(received, src=left)
    else:
        dist.recv(received, src=left)
        dist.send(mine, dst=right)
    return received


def _send_first_ring(rank, world_size):
    received = torch.empty(4)
    dist.send(nb00.ring_tensor(rank), dst=(rank + 1) % world_size)
    dist.recv(received, src=(rank - 1) % world_size)
    return received


def test_00_a_constant_stub_scores_zero_through_the_kernel_adapter():
    graded = _graded(nb00, "ring_pass")
    cases = [(3,), (2,)]
    outputs = [plain(nb00.run_ring(_constant_stub, n)) for (n,) in cases]
    assert graded.score(cases, outputs)[0] == 0.0


def test_00_the_parity_ring_finishes_on_3_ranks_and_the_send_first_ring_does_not():
    reports = nb00.run_ring(_parity_ring, 3)
    assert graded_ok(reports, 3)
    with pytest.raises(labs.LaunchTimeout):
        labs.launch(_send_first_ring, world_size=3, args=(3,), timeout_s=3)


def graded_ok(reports, n) -> bool:
    return nb00.ring_problem((n,), plain(reports)) is None


def test_01_split_stages_near_misses_score_low():
    graded = _graded(nb01, "split_stages")
    cases = graded.cases(random.Random(0))

    def later_stages_take_the_extra(num_layers, num_stages):
        base, extra = divmod(num_layers, num_stages)
        sizes = [base + (s >= num_stages - extra) for s in range(num_stages)]
        starts = [sum(sizes[:s]) for s in range(num_stages)]
        return [range(a, a + n) for a, n in zip(starts, sizes)]

    def ceil_blocks(num_layers, num_stages):
        size = -(-num_layers // num_stages)
        return [range(min(s * size, num_layers), min((s + 1) * size, num_layers)) for s in range(num_stages)]

    for fn in (later_stages_take_the_extra, ceil_blocks, lambda n, s: [range(n)], lambda n, s: 0.0):
        fraction, _ = graded.score(cases, [plain(fn(*case)) for case in cases])
        assert fraction <= 0.5, fn
