"""Notebook 10 (hybrid TP x PP): checks and graded tests of the two operators of a tensor-parallel MLP block, and
of ``plan_parallelism`` (``labs.exercises.nb10_plan``).

The learner writes ``before_up(x, group)`` (the operator before the column-split ``up``; Megatron's f) and
``after_down(x, group)`` (after the row-split ``down``; Megatron's g), under these neutral names: working out which
one communicates in which direction is the exercise. Each is judged by what it does on T real ranks
(``run_before_up`` / ``run_after_down``, on the kernel side): alone (outputs and input gradients for per-rank inputs
and upstream gradients), and inside a tensor-parallel MLP block whose other operator is labs' own (the block's
output, input gradient and gathered weight gradients). The kernel returns those as plain data; the grader draws the
shapes and seeds at grading time, rebuilds the same inputs and computes every expected value in its own process (the
one-process MLP block), and scores. Calling labs' own operator is refused.
"""
from __future__ import annotations

import random

import torch

from labs.exercises import nb10_plan as plan
from labs.grading import Graded
from labs.grading.kernel import describe, forbidden_calls, forbidden_in, plain
from labs.runtime.launcher import RankFailed, launch
from labs.parallel.tensor import MLPModel, gather_shards, tensor_parallel_block

__all__ = ["F_NAMES", "GRADED", "G_NAMES", "NAMES", "TOLERANCE", "check_plan_parallelism", "check_tp_operators",
           "reveal_operators", "run_after_down", "run_before_up"]

TOLERANCE = 1e-5
F_NAMES = ("labs.parallel.tensor.copy_to_tensor_parallel", "labs.parallel.tensor.CopyToTensorParallel")
G_NAMES = ("labs.parallel.tensor.reduce_from_tensor_parallel", "labs.parallel.tensor.ReduceFromTensorParallel")
NAMES = {"f": "before_up", "g": "after_down"}


# ---------------------------------------------------------------- the same inputs on both sides, from a seed


def _inputs(T: int, b: int, h: int, seed: int) -> dict:
    """Per-rank inputs and upstream gradients for the operator alone; the block's input and target."""
    gen = torch.Generator().manual_seed(seed)
    return {"x": [torch.randn(b, h, generator=gen) for _ in range(T)],
            "grad": [torch.randn(b, h, generator=gen) for _ in range(T)],
            "block_x": torch.randn(b, h, generator=gen), "target": torch.randn(b, h, generator=gen)}


def _block(h: int, seed: int):
    return MLPModel(num_layers=1, width=h, seed=seed).layers()[0]


# ---------------------------------------------------------------- kernel side: the learner's operator on T ranks


def _on_rank(rank, fn, role, T, b, h, seed):
    import torch.distributed as dist
    data, group = _inputs(T, b, h, seed), dist.group.WORLD
    x = data["x"][rank].clone().requires_grad_()
    out = fn(x, group)
    out.backward(data["grad"][rank])
    alone = {"out": out.detach(), "x_grad": x.grad}
    ops = {"f": fn} if role == "f" else {"g": fn}  # the other operator is labs' own
    shard = tensor_parallel_block(_block(h, seed), rank, T, group, **ops)
    x = data["block_x"].clone().requires_grad_()
    out = shard(x)
    (out * data["target"]).sum().backward()
    grads = {name: p.grad for name, p in shard.named_parameters()}
    return alone, {"out": out.detach(), "x_grad": x.grad}, grads


def _run(fn, role: str, T: int, b: int, h: int, seed: int) -> dict:
    try:
        per_rank = launch(_on_rank, world_size=T, args=(fn, role, T, b, h, seed), timeout_s=60)
    except RankFailed as error:
        text = error.worker_traceback
        if "NotImplementedError" in text:
            raise NotImplementedError() from None
        if forbidden_in(error):  # a rank called labs' own operator: describe() reads the name from the traceback
            raise
        raise RuntimeError(f"rank {error.rank}: {text.strip().splitlines()[-1]}") from None
    return {"alone": {key: [r[0][key].tolist() for r in per_rank] for key in ("out", "x_grad")},
            "block": {key: [r[1][key].tolist() for r in per_rank] for key in ("out", "x_grad")},
            "grads": {k: v.tolist() for k, v in gather_shards([r[2] for r in per_rank]).items()}}


def run_before_up(fn, T, b, h, seed):
    return _run(fn, "f", T, b, h, seed)


def run_after_down(fn, T, b, h, seed):
    return _run(fn, "g", T, b, h, seed)


# ---------------------------------------------------------------- grader side: expected values and the score


def _expected(role: str, T: int, b: int, h: int, seed: int) -> dict:
    data = _inputs(T, b, h, seed)
    total_x, total_grad = sum(data["x"]), sum(data["grad"])
    if role == "f":
        alone = {"out": data["x"], "x_grad": [total_grad] * T}
    else:
        alone = {"out": [total_x] * T, "x_grad": data["grad"]}
    block = _block(h, seed)
    x = data["block_x"].clone().requires_grad_()
    out = block(x)
    (out * data["target"]).sum().backward()
    return {"alone": alone, "block": {"out": [out.detach()] * T, "x_grad": [x.grad] * T},
            "grads": {n: p.grad for n, p in block.named_parameters()},
            "own": {"out": data["x"], "x_grad": data["grad"]}, "sums": {"out": total_x, "x_grad": total_grad}}


def _differs(got, want) -> float | None:
    """Largest difference, or None when shapes do not match."""
    try:
        got = torch.tensor(got, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        return None
    return None if got.shape != want.shape else float((got - want).abs().max())


def _close(got, want) -> bool:
    error = _differs(got, want)
    return error is not None and error <= TOLERANCE


def _problem(role: str, case: tuple, output) -> str | None:
    """None when the output is right; else what is wrong, in the learner's terms."""
    T, b, h, seed = case
    name = NAMES[role]
    where = f"{name} on T={T} ranks, x of shape ({b}, {h})"
    if isinstance(output, dict) and not {"alone", "block", "grads"} <= set(output):
        return f"{where}: {output}"
    want = _expected(role, T, b, h, seed)
    for key, direction in (("out", "forward"), ("x_grad", "backward")):
        got = output["alone"][key]
        if all(_close(g, w) for g, w in zip(got, want["alone"][key])) and len(got) == T:
            continue
        own = all(_close(g, w) for g, w in zip(got, want["own"][key]))
        summed = all(_close(g, want["sums"][key]) for g in got)
        did = (": it summed over the ranks" if summed else ": it returned each rank's own tensor" if own
               else "")
        if role == "f" and key == "out":
            hint = "differs from what up needs (every rank already holds the whole input)"
        elif role == "f":
            hint = "differs from the block's input gradient (each rank's slice of up sees only part of it)"
        elif key == "out":
            hint = "differs from the block's output (each rank holds only a partial sum of down)"
        else:
            hint = "differs from the gradient each rank's partial sum needs (the output's gradient, as it is)"
        return f"{where}: the {direction} {hint}{did}"
    for key, what in (("out", "output"), ("x_grad", "input gradient")):
        if not all(_close(g, w) for g, w in zip(output["block"][key], want["block"][key])):
            return f"{where}: inside the tensor-parallel MLP block, the {what} differs from one process"
    for param, grad in want["grads"].items():
        if not _close(output["grads"].get(param), grad):
            return f"{where}: inside the MLP block, the gradient of {param} differs from one process"
    return None


def _cases(rng: random.Random) -> list[tuple]:
    """Hidden shapes: T in 2..4 ranks, a micro-batch b and a width h with 4h divisible by T, fresh seeds."""
    cases = []
    for T in (2, 3, 4, rng.choice((2, 4))):
        h = rng.choice((3, 6)) if T == 3 else rng.randint(3, 9)
        cases.append((T, rng.randint(1, 5), h, rng.randrange(10 ** 6)))
    return cases


def _scorer(role: str):
    def score(cases, outputs) -> tuple[float, str]:
        failures = []
        for case, output in zip(cases, outputs):
            if isinstance(output, dict) and output.get("forbidden"):
                return 0.0, f"calls labs' own operator ({output['forbidden']}): write it yourself"
            problem = _problem(role, case, output)
            if problem:
                failures.append((case[0], problem))
        if not failures:
            return 1.0, f"all {len(cases)} cases equal the one-process block (outputs, input and weight gradients)"
        worst = max(failures, key=lambda f: f[0])[1]  # the largest group that failed says the most
        return 1 - len(failures) / len(cases), f"{len(failures)} of {len(cases)} cases wrong; e.g. {worst}"
    return score


# ---------------------------------------------------------------- the visible check (kernel side)


def _call(run, fn, case, forbidden):
    """What the kernel side sends back for one case (labs.grading.kernel's guard, plain data and error reports)."""
    with forbidden_calls(forbidden) as calls:  # the swapped code reaches the forked ranks too
        try:
            output = plain(run(fn, *case))
        except Exception as error:  # noqa: BLE001 - a submission may raise anything
            output = describe(error)
    return {"forbidden": calls[0]} if calls else output


def check_tp_operators(before_up, after_down) -> bool:
    """Both operators on 2 and 4 ranks, alone and inside the MLP block, against one process."""
    cases = [(2, 3, 4, 11), (4, 2, 5, 12)]
    ok = True
    for role, fn, run, forbidden in (("f", before_up, run_before_up, F_NAMES),
                                     ("g", after_down, run_after_down, G_NAMES)):
        name = NAMES[role]
        outputs = [_call(run, fn, case, forbidden) for case in cases]
        if any(isinstance(o, dict) and o.get("not_implemented") for o in outputs):
            print(f"not implemented yet: {name} (the notebook carries on with labs.parallel.tensor's own)")
            ok = False
            continue
        fraction, message = _scorer(role)(cases, outputs)
        print(f"{name}: {message}" + (" -> correct" if fraction == 1 else ""))
        ok = ok and fraction == 1
    return ok


# ---------------------------------------------------------------- graded entries (protocol of COMMON.md)


def _graded(name, points, role, run, forbidden):
    return Graded(name=name, points=points, cases=_cases, score=_scorer(role),
                  run=f"labs.exercises.nb10:{run.__name__}", forbidden=forbidden)


def check_plan_parallelism(fn) -> bool:
    """The learner's plans for the notebook's three cases (GPT-3 175B on 64 GPUs, and two smaller), judged by the
    grader's model of the facts. Never raises; True when every plan earns full credit."""
    from labs.exercises._common import report
    problems = []
    for case in plan.VISIBLE:
        output = _call(lambda f, *c: f(*c), fn, case, PLAN_NAMES)
        if isinstance(output, dict) and output.get("not_implemented"):
            print("not implemented yet: plan_parallelism (nothing to carry on with: the plan below appears once "
                  "yours passes)")
            return False
        if isinstance(output, dict) and output.get("forbidden"):
            print(f"plan_parallelism calls {output['forbidden']}, the grader's own model: write your own")
            return False
        message = plan.problem(case, output)
        if message:
            problems.append(message)
    return report(problems, f"plan_parallelism: the fastest plan that fits in all {len(plan.VISIBLE)} cases "
                            f"-> correct")


def reveal_operators(ok: bool) -> None:
    """After the check: which operator is Megatron's f and which g, and what each does, once both passed."""
    if not ok:
        print("The operators' names and directions appear here once before_up and after_down pass their check.")
        return
    print("before_up is Megatron's f: the identity forward (every rank already holds the whole input), an all-reduce\n"
          "  backward (each rank's slice of up gives only part of the input's gradient: the sum over ranks is it).\n"
          "after_down is g: an all-reduce forward (the partial sums of down), the identity backward (the output's\n"
          "  gradient is each partial sum's gradient as it is). Each is the other with forward and backward swapped:\n"
          "  conjugate (Shoeybi et al. 2019, arXiv:1909.08053, section 3). Per block and micro-batch: one all-reduce\n"
          "  of a (b, h) tensor forward (g) and one backward (f), but the model's first block needs no f (its input\n"
          "  is the data); a transformer layer has two such blocks (attention split by heads): Megatron's two\n"
          "  all-reduces per layer in each direction.")


PLAN_NAMES = ("labs.exercises.nb10_plan.best", "labs.exercises.nb10_plan.evaluate", "labs.exercises.nb10_plan.options")
GRADED = [_graded("before_up", 1, "f", run_before_up, F_NAMES),
          _graded("after_down", 1, "g", run_after_down, G_NAMES),
          Graded(name="plan_parallelism", points=3, cases=plan.cases, score=plan.score, forbidden=PLAN_NAMES)]
