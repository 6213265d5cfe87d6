"""Exercise 10 graded the protocol's way: the kernel side runs the learner's operator on real ranks and returns plain
data; the grader scores it against its own one-process block. Right operators score 1, wrong ones 0 with a reason.
``plan_parallelism`` (no process): a right model of the facts scores 1, each plausible wrong one at most 0.5, a
constant plan 0, and the grader's own functions are refused."""
import importlib
import json
import random

import torch
import torch.distributed as dist

from labs.exercises import nb10


class _F(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def right_f(x, group):
    return _F.apply(x, group)


def forgot_the_backward_all_reduce(x, group):
    return x


def uses_the_reference(x, group):
    import labs.parallel.tensor
    return labs.parallel.tensor.copy_to_tensor_parallel(x, group)


def uses_the_reference_class(x, group):
    from labs.parallel.tensor import CopyToTensorParallel
    return CopyToTensorParallel.apply(x, group)


def _grade(fn, role="f"):
    run = nb10.run_before_up if role == "f" else nb10.run_after_down
    names = nb10.F_NAMES if role == "f" else nb10.G_NAMES
    cases = nb10._cases(random.Random(7))[:2]
    outputs = [json.loads(json.dumps(nb10._call(run, fn, case, names))) for case in cases]  # plain data only
    return nb10._scorer(role)(cases, outputs)


def test_right_operator_scores_full_marks_against_the_graders_own_reference():
    fraction, message = _grade(right_f)
    assert fraction == 1.0, message


def test_wrong_and_borrowed_operators_score_nothing_with_a_reason():
    fraction, message = _grade(forgot_the_backward_all_reduce)
    assert fraction == 0.0 and "the backward differs from the block's input gradient" in message
    assert "returned each rank's own tensor" in message
    fraction, message = _grade(uses_the_reference)
    assert fraction == 0.0 and "calls labs' own operator" in message
    fraction, message = _grade(uses_the_reference_class)  # the Function class itself, called on forked ranks
    assert fraction == 0.0 and "calls labs' own operator" in message
    fraction, message = _grade(right_f, role="g")  # f is not g: its forward does not sum
    assert fraction == 0.0 and "the forward differs from the block's output" in message


def test_graded_entries_name_their_run_functions():
    for graded in nb10.GRADED:
        if graded.run:  # the protocol of COMMON.md (plan_parallelism runs in the grader's process: no ranks)
            module, function = graded.run.split(":")
            assert callable(getattr(importlib.import_module(module), function))
            assert graded.forbidden
        assert graded.name in ("before_up", "after_down", "plan_parallelism")
    assert {g.name: g.points for g in nb10.GRADED} == {"before_up": 1, "after_down": 1, "plan_parallelism": 3}


def test_forbidden_calls_refuses_an_autograd_function_class_and_restores_it():
    from labs.grading.kernel import forbidden_calls
    from labs.parallel.tensor import CopyToTensorParallel
    base = torch.autograd.Function.forward.__code__
    x = torch.ones(2, requires_grad=True)
    with forbidden_calls(["labs.parallel.tensor.CopyToTensorParallel"]) as calls:
        try:
            CopyToTensorParallel.apply(x, None)
            raise AssertionError("the class's apply was not refused")
        except PermissionError as error:
            assert "labs.parallel.tensor.CopyToTensorParallel" in str(error)
        assert _F.apply(x, None).tolist() == [1.0, 1.0]  # a learner's own Function (same forward code) still runs
    assert calls == ["labs.parallel.tensor.CopyToTensorParallel"]
    assert CopyToTensorParallel.apply(x, None).tolist() == [1.0, 1.0]
    assert torch.autograd.Function.forward.__code__ is base  # torch's base class is never touched


# ---------------------------------------------------------------- plan_parallelism (no process)

from labs.exercises import nb10_plan  # noqa: E402


def learner_plan(model, cluster, global_batch):
    """A learner's own model of the facts (the solution notebook's), not the grader's functions."""
    L, hid, seq = model["layers"], model["hidden"], model["seq"]
    gpus, best = cluster["nodes"] * cluster["gpus_per_node"], None
    for T in (t for t in (1, 2, 4, 8) if cluster["gpus_per_node"] % t == 0):
        for P in (p for p in range(1, L + 1) if L % p == 0 and gpus % (p * T) == 0):
            D = gpus // (P * T)
            for M in (m for m in range(1, global_batch + 1) if global_batch % D == 0 and (global_batch // D) % m == 0):
                b, layers = global_batch / (D * M), L / P
                shard = 12 * hid * hid * layers / T
                forward = 24 * seq * b * hid * hid * layers / T / (cluster["tflops"] * 1e12)
                ring = 2 * (T - 1) / T * 2 * seq * b * hid / (cluster["nvlink_gb_s"] * 1e9)
                step = (M + P - 1) * (3 * forward + 4 * layers * ring) + 2 * (D - 1) / D * 2 * shard / (
                    cluster["network_gb_s"] * 1e9)
                memory = 16 * shard + min(P, M) * layers * 34 * seq * b * hid / T
                if memory <= cluster["memory_gb"] * 1e9 and (best is None or step < best[0]):
                    best = (step, {"P": P, "T": T, "D": D, "M": M})
    return best[1] if best else None


def _plan_score(fn, seed=17):
    cases = nb10_plan.cases(random.Random(seed))
    outputs = [json.loads(json.dumps(fn(*case))) for case in cases]
    return nb10_plan.score(cases, outputs)


def test_a_right_plan_scores_full_and_every_plausible_mistake_at_most_half():
    assert _plan_score(learner_plan)[0] == 1.0
    for name, wrong in nb10_plan.WRONG.items():
        fraction, message = _plan_score(wrong)
        assert fraction <= 0.5, (name, fraction)
    assert nb10.check_plan_parallelism(learner_plan)


def test_constant_plans_and_stubs_score_nothing():
    cases = nb10_plan.cases(random.Random(3))
    for constant in ({"P": 8, "T": 8, "D": 1, "M": 64}, {"P": 1, "T": 1, "D": 1, "M": 1}, None, {}, 0):
        assert nb10_plan.score(cases, [constant] * len(cases))[0] == 0.0
    best = [learner_plan(*case) for case in cases]
    for plan in {json.dumps(p, sort_keys=True) for p in best}:  # the right answer of one case, for every case
        assert nb10_plan.score(cases, [json.loads(plan)] * len(cases))[0] == 0.0


def test_the_graded_cases_avoid_the_shown_ones_and_expose_every_mistake():
    cases = nb10_plan.cases(random.Random(5))
    assert not {json.dumps(c, sort_keys=True) for c in cases} & set(nb10_plan.SHOWN)
    for name, wrong in nb10_plan.WRONG.items():
        assert sum(nb10_plan.credit(c, wrong(*c))[0] == 0 for c in cases) >= 4, name


def test_the_plan_check_refuses_the_graders_model(capsys):
    assert not nb10.check_plan_parallelism(nb10_plan.best)
    assert "the grader's own model" in capsys.readouterr().out
