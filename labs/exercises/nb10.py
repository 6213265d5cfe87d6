"""Notebook 10 (hybrid TP x PP): checks and graded tests of Megatron's two conjugate operators.

The learner writes ``copy_to_tp(x, group)`` (Megatron's f: identity forward, all-reduce backward) and
``reduce_from_tp(x, group)`` (g: all-reduce forward, identity backward). Each is judged by what it does on T real
ranks (``run_copy_to_tp`` / ``run_reduce_from_tp``, on the kernel side): alone (outputs and input gradients for
per-rank inputs and upstream gradients), and inside a tensor-parallel MLP block whose other operator is labs' own
(the block's output, input gradient and gathered weight gradients). The kernel returns those as plain data; the
grader draws the shapes and seeds at grading time, rebuilds the same inputs and computes every expected value in its
own process (the one-process MLP block), and scores. Calling labs' own operator is refused.
"""
from __future__ import annotations

import random

import torch

from labs.grading import Graded
from labs.grading.kernel import describe, forbidden_calls, forbidden_in, plain
from labs.runtime.launcher import RankFailed, launch
from labs.parallel.tensor import MLPModel, gather_shards, tensor_parallel_block

__all__ = ["F_NAMES", "GRADED", "G_NAMES", "TOLERANCE", "check_conjugate_operators", "run_copy_to_tp",
           "run_reduce_from_tp"]

TOLERANCE = 1e-5
F_NAMES = ("labs.parallel.tensor.copy_to_tensor_parallel", "labs.parallel.tensor.CopyToTensorParallel")
G_NAMES = ("labs.parallel.tensor.reduce_from_tensor_parallel", "labs.parallel.tensor.ReduceFromTensorParallel")


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


def run_copy_to_tp(fn, T, b, h, seed):
    return _run(fn, "f", T, b, h, seed)


def run_reduce_from_tp(fn, T, b, h, seed):
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
    name = "copy_to_tp" if role == "f" else "reduce_from_tp"
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
        if role == "f" and key == "out":
            hint = "must return x unchanged (identity)" + (": it summed x over the ranks" if summed else "")
        elif role == "f":
            hint = ("must all-reduce the gradient (sum over the T ranks)" +
                    (": it returned each rank's own gradient" if own else ""))
        elif key == "out":
            hint = "must all-reduce x (sum over the T ranks)" + (": it returned x unchanged" if own else "")
        else:
            hint = "must be the identity" + (": it summed the gradient over the ranks" if summed else "")
        return f"{where}: the {direction} {hint}"
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


def check_conjugate_operators(copy_to_tp, reduce_from_tp) -> bool:
    """Both operators on 2 and 4 ranks, alone and inside the MLP block, against one process."""
    cases = [(2, 3, 4, 11), (4, 2, 5, 12)]
    ok = True
    for role, fn, run, forbidden in (("f", copy_to_tp, run_copy_to_tp, F_NAMES),
                                     ("g", reduce_from_tp, run_reduce_from_tp, G_NAMES)):
        name = "copy_to_tp" if role == "f" else "reduce_from_tp"
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


GRADED = [_graded("copy_to_tp", 2, "f", run_copy_to_tp, F_NAMES),
          _graded("reduce_from_tp", 2, "g", run_reduce_from_tp, G_NAMES)]
