"""Why "zero" bubble needs post-validation, and deferred W's against a data-parallel all-reduce (simulated)."""
from __future__ import annotations

import pytest

from labs.errors import InputError
from labs.schedules import dualpipe_v, dualpipe_v_pairs, one_f_one_b, zb_h1, zb_h2, zb_v
from labs.timeline import Costs
from labs.timeline.steady import dp_step, repeat, steady_step

UNIT, HALF = Costs(1.0, 1.0, 1.0), Costs(0.5, 0.5, 0.5)  # F = I = W per stage; V-shaped: chunks of half a stage


def test_post_validation_removes_the_ramp_only_where_every_rank_has_no_gap():
    work = 24.0  # M (F + I + W) per rank at P=4, M=8
    assert steady_step(zb_h2(4, 8), UNIT) == 27 and steady_step(zb_h2(4, 8), UNIT, synchronised=False) == work
    assert steady_step(zb_v(4, 8), HALF) == 25.5 and steady_step(zb_v(4, 8), HALF, synchronised=False) == work
    # negative controls: the bubble of 1F1B, ZB-H1 and DualPipeV sits inside rank 0's own span, so it stays
    assert steady_step(one_f_one_b(4, 8), UNIT, synchronised=False) == 33
    assert steady_step(zb_h1(4, 8), UNIT, synchronised=False) == 27
    pairs = dualpipe_v_pairs(4, 8)
    assert steady_step(dualpipe_v(4, 8), HALF, together=pairs, synchronised=False) == 27
    assert steady_step(zb_h2(4, 8), UNIT, sync_s=0.5) == 27.5  # a synchronisation that takes time adds to each step


def test_repeat_and_bad_input():
    assert len(repeat(zb_h1(2, 2), 3)[0]) == 3 * len(zb_h1(2, 2)[0])
    with pytest.raises(InputError, match="K >= 2"):
        steady_step(zb_h1(2, 2), UNIT, K=1, synchronised=False)


def test_a_long_last_all_reduce_takes_back_part_of_zb_h1s_gain():
    """1F1B's later ranks finish early and hide their all-reduce in the drain; ZB-H1 fills the drain with W's."""
    gain = {name: dp_step(one_f_one_b(4, 8), UNIT, a) - dp_step(zb_h1(4, 8), UNIT, a)
            for name, a in (("none", 0.0), ("equal", 1.0), ("last stage long", [1, 1, 1, 4]), ("all long", 4.0))}
    assert gain == {"none": 6, "equal": 6, "last stage long": 3, "all long": 6}
