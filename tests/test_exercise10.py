"""Exercise 10 graded the protocol's way: the kernel side runs the learner's operator on real ranks and returns plain
data; the grader scores it against its own one-process block. Right operators score 1, wrong ones 0 with a reason."""
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
    run = nb10.run_copy_to_tp if role == "f" else nb10.run_reduce_from_tp
    names = nb10.F_NAMES if role == "f" else nb10.G_NAMES
    cases = nb10._cases(random.Random(7))[:2]
    outputs = [json.loads(json.dumps(nb10._call(run, fn, case, names))) for case in cases]  # plain data only
    return nb10._scorer(role)(cases, outputs)


def test_right_operator_scores_full_marks_against_the_graders_own_reference():
    fraction, message = _grade(right_f)
    assert fraction == 1.0, message


def test_wrong_and_borrowed_operators_score_nothing_with_a_reason():
    fraction, message = _grade(forgot_the_backward_all_reduce)
    assert fraction == 0.0 and "must all-reduce the gradient" in message
    fraction, message = _grade(uses_the_reference)
    assert fraction == 0.0 and "calls labs' own operator" in message
    fraction, message = _grade(uses_the_reference_class)  # the Function class itself, called on forked ranks
    assert fraction == 0.0 and "calls labs' own operator" in message
    fraction, message = _grade(right_f, role="g")  # f is not g: its forward does not sum
    assert fraction == 0.0 and "must all-reduce x" in message


def test_graded_entries_name_their_run_functions():
    for graded in nb10.GRADED:
        if hasattr(graded, "run"):  # the protocol of COMMON.md
            module, function = graded.run.split(":")
            assert callable(getattr(importlib.import_module(module), function))
            assert graded.forbidden
        assert graded.name in ("copy_to_tp", "reduce_from_tp")


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
