"""Notebook 08 (accumulation vs micro-batching): the seed notes' stage fails on real ranks; ``pipeline_stage``'s score
gives full marks to the fix (in either backward order) and nothing to each half-fix or stub; a stage that skips its
messages is refused; the micro-batch efficiency and speed-up verdicts print False on their planted inputs. The
pipeline_stage tests start 2-4 ranks per case (under a second each)."""
import random

import pytest
import torch
import torch.distributed as dist

import labs
from labs.course.accumulation import microbatch_times
from labs.exercises import nb08
from labs.grading import plain
from tests.kernel_outputs import outputs


# ------------------------------------------------------------------ 08 pipeline_stage (real ranks)
def _variant(send_back=True, input_grad=True, scale=True, order="forward", local=False):
    """The reference fix with one of its steps undone: the half-fixes a learner writes."""
    from labs.models import loss_fn

    def stage_fn(rank, world_size, stage, inputs, targets, M, microbatch_shape):
        first, last = rank == 0, rank == world_size - 1
        micro = inputs.chunk(M) if first else [None] * M
        labels = targets.chunk(M) if last else [None] * M
        xs, outs = [], []
        for m in range(M):
            x = micro[m]
            if not first:
                x = torch.empty(microbatch_shape)
                dist.recv(x, src=rank - 1)
                if input_grad:
                    x.requires_grad_()
            out = stage(x)
            if not last:
                dist.send(out.detach(), dst=rank + 1)
            xs.append(x)
            outs.append(out)
        steps = list(range(M)) if order == "forward" or (order == "mixed" and rank % 2) else list(reversed(range(M)))
        for m in steps:
            if last:
                loss = loss_fn(outs[m], labels[m])
                (loss / M if scale else loss).backward()
            else:
                grad = torch.empty(microbatch_shape)
                dist.recv(grad, src=rank + 1)
                outs[m].backward(grad)
            if not first and send_back:
                dist.send(xs[m].grad if xs[m].grad is not None else torch.zeros(microbatch_shape), dst=rank - 1)
        return {name: p.grad for name, p in stage.named_parameters()}
    return stage_fn


def _seed_stage(rank, world_size, stage, inputs, targets, M, microbatch_shape):
    micro_batches = inputs.chunk(M) if rank == 0 else [None] * M
    outputs = []
    for mb in micro_batches:
        if rank > 0:
            mb = torch.empty(microbatch_shape)
            dist.recv(mb, src=rank - 1)
        out = stage(mb)
        if rank < world_size - 1:
            dist.send(out.detach(), dst=rank + 1)
        outputs.append(out)
    for out in reversed(outputs):
        out.backward()
    return {name: p.grad for name, p in stage.named_parameters()}


@pytest.fixture(scope="module")
def nb08_cases():
    return nb08.GRADED[0].cases(random.Random(8))


def test_pipeline_stage_score_reference_and_half_fixes(nb08_cases):
    graded = nb08.GRADED[0]
    cases = nb08_cases
    assert all(case[1] == 2 * case[0] for case in cases)
    assert not set(cases) & set(nb08.CHECK_CASES)
    assert graded.score(cases, outputs(graded, nb08.reference_pipeline_stage, cases, through_json=False))[0] == 1.0
    reversed_order = _variant(order="reversed")
    assert graded.score(cases, outputs(graded, reversed_order, cases, through_json=False))[0] == 1.0  # any order both neighbours share
    fraction, message = graded.score(cases, outputs(graded, _variant(scale=False), cases, through_json=False))
    assert fraction == 0.0 and "x one process's" in message  # right only at M = 1, a trivial case for this slip
    for wrong in (_variant(input_grad=False), _variant(order="mixed"), _variant(send_back=False), _seed_stage):
        assert graded.score(cases, outputs(graded, wrong, cases, through_json=False))[0] == 0.0
    assert graded.score(cases, outputs(graded, lambda *a: {}, cases, through_json=False))[0] == 0.0


def test_the_seeds_own_stage_fails_on_real_ranks_with_the_scalar_error():
    with pytest.raises(Exception, match="grad can be implicitly created only for scalar outputs"):
        nb08.run_pipeline_stage(_seed_stage, 2, 4, 16, 8, 2, 0)


def test_a_stage_that_returns_gradients_without_messages_is_refused():
    def local(rank, world_size, stage, inputs, targets, M, microbatch_shape):
        return {name: torch.zeros_like(p) for name, p in stage.named_parameters()}
    output = plain(nb08.run_pipeline_stage(local, 2, 4, 16, 8, 2, 0))
    assert "differ from one process" in nb08.problem((2, 4, 16, 8, 2, 0), output)
    right = plain(nb08.run_pipeline_stage(nb08.reference_pipeline_stage, 2, 4, 16, 8, 2, 0))
    silent = {**right, "messages": [{"sent": 0, "received": 0}, {"sent": 0, "received": 0}]}
    assert "without receiving or sending" in nb08.problem((2, 4, 16, 8, 2, 0), silent)


# ------------------------------------------------------------------ 08: micro-batch efficiency, really measured
def test_microbatch_times_are_measured_and_a_planted_efficient_device_fails_both_verdicts():
    times = microbatch_times(M_values=(1, 4, 16), batch_size=64, width=64, repeats=3)
    assert set(times) == {1, 4, 16} and all(t > 0 for t in times.values())
    efficient = {M: times[1] for M in times}  # t(b) proportional to b: the batch costs the same however cut
    assert not nb08.small_microbatches_cost_more(efficient) and not nb08.best_m_inside(efficient, 4)
    with pytest.raises(labs.InputError):
        microbatch_times(M_values=(3,), batch_size=64)


def test_speedup_verdict_refuses_the_seed_notes_nearly_p():
    assert nb08.speedup_matches(2.81, 4, 8)
    assert not nb08.speedup_matches(4.0 * 0.97, 4, 8)  # "a speed-up of nearly P"


