"""Notebook 10, exercise 2: ``plan_parallelism(model, cluster, global_batch)`` -> {"P", "T", "D", "M"}.

Choose pipeline stages P, tensor-parallel width T, data-parallel replicas D and micro-batches M for a transformer on a
cluster: the shortest 1F1B step that fits every GPU's memory (Narayanan et al. 2021, arXiv:2104.04473, section 3:
tensor parallelism inside a node, the pipeline across, the model-parallel size just large enough to fit, data
parallelism for the rest). The notebook states the *facts* (``FACTS``, the same sentences as its markdown), not how
they combine: which rank holds the most activations under 1F1B and how many (notebooks 04, 06), what the bubble
costs (02, 04), what T adds per layer (10), what D adds per step (08, 10). The learner's model of them is the
exercise.

Grader side: ``evaluate`` is the grader's model of the facts; a case earns 1 when the plan is valid, fits and is
within 2% of the best valid plan's step, 0.5 within 5%, else 0 (a constant answer earns 0: ``score``). Hidden cases
are drawn at grading so that each plausible wrong model of the facts (``MISTAKES``) earns nothing on at least half
of them; the cases the notebook shows are never graded. ``evaluate``, ``best`` and ``options`` are forbidden.
"""
from __future__ import annotations

import json
import random

from ._credit import greedy_cover

__all__ = ["FACTS", "MISTAKES", "SHOWN", "VISIBLE", "WRONG", "best", "cases", "credit", "evaluate", "options",
           "problem", "score"]

FACTS = """\
* A transformer layer of hidden size h has 12·h² parameters; its forward on b sequences of s tokens costs
  24·s·b·h² floating-point operations, its backward twice that. A GPU sustains `tflops`·10¹² operations a second.
* Training state: 16 bytes per parameter (bf16 weights and gradients, fp32 master weights and Adam's two moments,
  Rajbhandari et al. 2020, arXiv:1910.02054 §3.1), on every GPU that holds that parameter's shard.
* Activations: 34·s·b·h/T bytes per layer and micro-batch (selective recomputation with sequence parallelism,
  Korthikanti et al. 2022, arXiv:2205.05198), held from the micro-batch's forward to its backward.
* Tensor parallelism of width T divides a layer's parameters, operations and activations by T, stays inside one node
  (T divides `gpus_per_node`), and per layer and micro-batch all-reduces an (s, b, h) bf16 tensor twice in the forward
  and twice in the backward; a ring all-reduce of n bytes over T GPUs takes 2(T−1)/T·n / bandwidth, at `nvlink_gb_s`
  inside a node.
* The pipeline runs 1F1B with L/P layers per stage (P divides L); its messages are small: ignore them.
* Data parallelism: each of the D replicas takes global_batch/D sequences per step, in M micro-batches of
  b = global_batch/(D·M) sequences (a whole number); after the step the bf16 gradients of each GPU's shard are
  all-reduced across the D replicas over the network (`network_gb_s`), not overlapped with compute.
* P·T·D = every GPU of the cluster; T ∈ {1, 2, 4, 8}."""

GPT3 = {"layers": 96, "hidden": 12288, "seq": 2048}
VISIBLE = [  # the notebook's check; never graded
    (GPT3, {"nodes": 8, "gpus_per_node": 8, "memory_gb": 80, "tflops": 150, "nvlink_gb_s": 300, "network_gb_s": 25}, 64),
    ({"layers": 24, "hidden": 2048, "seq": 2048}, {"nodes": 1, "gpus_per_node": 8, "memory_gb": 24, "tflops": 100,
                                                   "nvlink_gb_s": 150, "network_gb_s": 12.5}, 64),
    ({"layers": 48, "hidden": 6144, "seq": 2048}, {"nodes": 4, "gpus_per_node": 8, "memory_gb": 40, "tflops": 300,
                                                   "nvlink_gb_s": 450, "network_gb_s": 50}, 256),
]
SHOWN = [json.dumps(c, sort_keys=True) for c in VISIBLE]


def options(model: dict, cluster: dict, batch: int):
    """Every valid plan: T in {1, 2, 4, 8} dividing gpus_per_node, P dividing the layers, D = GPUs / (P*T) whole and
    dividing the batch, M dividing batch / D."""
    gpus, per_node = cluster["nodes"] * cluster["gpus_per_node"], cluster["gpus_per_node"]
    for T in (t for t in (1, 2, 4, 8) if per_node % t == 0):
        for P in (p for p in range(1, model["layers"] + 1) if model["layers"] % p == 0 and gpus % (p * T) == 0):
            D = gpus // (P * T)
            if batch % D:
                continue
            for M in (m for m in range(1, batch // D + 1) if (batch // D) % m == 0):
                yield {"P": P, "T": T, "D": D, "M": M}


def evaluate(plan: dict, model: dict, cluster: dict, batch: int, held="1f1b", activations=True, act_over_t=True,
             tp_comm=True, bubble=True, dp_comm=True) -> tuple[float, float]:
    """(step seconds, bytes on the fullest GPU) of a plan under the facts; the keyword switches turn the model into
    one of the plausible wrong ones (``MISTAKES``)."""
    P, T, D, M = plan["P"], plan["T"], plan["D"], plan["M"]
    L, h, s = model["layers"], model["hidden"], model["seq"]
    b = batch / (D * M)
    layers = L / P
    params = 12 * h * h * layers / T
    forward = 24 * s * b * h * h * layers / T / (cluster["tflops"] * 1e12)
    backward = 2 * forward
    if tp_comm and T > 1:
        each = 2 * (T - 1) / T * (2 * s * b * h) / (cluster["nvlink_gb_s"] * 1e9)
        forward += 2 * layers * each
        backward += 2 * layers * each
    step = (M + P - 1 if bubble else M) * (forward + backward)
    if dp_comm and D > 1:
        step += 2 * (D - 1) / D * (2 * params) / (cluster["network_gb_s"] * 1e9)
    in_flight = {"1f1b": min(P, M), "gpipe": M, "one": 1}[held]
    per_layer = 34 * s * b * h / (T if act_over_t else 1)
    return step, 16 * params + (in_flight * layers * per_layer if activations else 0)


def best(model: dict, cluster: dict, batch: int, **mistake) -> dict | None:
    """The fastest valid plan that fits (under a mistaken model with ``mistake``); None when none fits."""
    top = None
    for plan in options(model, cluster, batch):
        step, memory = evaluate(plan, model, cluster, batch, **mistake)
        if memory <= cluster["memory_gb"] * 1e9 and (top is None or step < top[0]):
            top = (step, plan)
    return top[1] if top else None


def credit(case: tuple, got) -> tuple[float, str | None]:
    """(credit, what is wrong): 1 for a valid plan that fits within 2% of the best step, 0.5 within 5%, else 0."""
    model, cluster, batch = case
    where = (f"plan_parallelism(L={model['layers']}, h={model['hidden']}, {cluster['nodes']}x{cluster['gpus_per_node']}"
             f" GPUs of {cluster['memory_gb']} GB, batch {batch})")
    try:
        plan = {k: got[k] for k in ("P", "T", "D", "M")}
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in plan.values()):
            raise TypeError("P, T, D and M must be whole numbers")
    except (TypeError, KeyError, IndexError) as error:
        return 0.0, f"{where} returned {str(got)[:80]}: return {{'P': int, 'T': int, 'D': int, 'M': int}} ({error})"
    if plan not in list(options(model, cluster, batch)):
        return 0.0, (f"{where}: {plan} is not a valid plan (P divides the layers, T in 1, 2, 4, 8 divides a node, "
                     f"P*T*D = every GPU, D*M divides the batch)")
    step, memory = evaluate(plan, model, cluster, batch)
    if memory > cluster["memory_gb"] * 1e9:
        return 0.0, f"{where}: {plan} needs {memory / 1e9:.1f} GB on its fullest GPU, over {cluster['memory_gb']} GB"
    top = evaluate(best(model, cluster, batch), model, cluster, batch)[0]
    if step <= 1.02 * top:
        return 1.0, None
    return (0.5 if step <= 1.05 * top else 0.0), (f"{where}: {plan} fits but its step takes {step:.2f} s; a plan "
                                                 f"that fits takes {top:.2f} s")


def problem(case: tuple, got) -> str | None:
    """None when the plan earns full credit, else what is wrong (the visible check's judge)."""
    return credit(case, got)[1]


MISTAKES = {"activations ignored": dict(activations=False), "GPipe's M micro-batches held": dict(held="gpipe"),
            "one micro-batch held": dict(held="one"), "activations not divided by T": dict(act_over_t=False),
            "no all-reduce for tensor parallelism": dict(tp_comm=False), "bubble ignored": dict(bubble=False),
            "gradient all-reduce ignored": dict(dp_comm=False)}
WRONG = {name: (lambda model, cluster, batch, m=m: best(model, cluster, batch, **m)) for name, m in MISTAKES.items()}


def _draw(rng: random.Random) -> tuple:
    model = {"layers": rng.choice([24, 32, 40, 48, 64, 80, 96]), "hidden": rng.choice([2048, 4096, 6144, 8192, 12288]),
             "seq": rng.choice([1024, 2048, 4096])}
    cluster = {"nodes": rng.choice([1, 2, 4, 8, 16]), "gpus_per_node": 8, "memory_gb": rng.choice([24, 40, 80]),
               "tflops": rng.choice([100, 150, 300]), "nvlink_gb_s": rng.choice([150, 300, 450]),
               "network_gb_s": rng.choice([12.5, 25, 50])}
    return model, cluster, rng.choice([64, 128, 256, 512])


def cases(rng: random.Random, count: int = 8, quota: int = 4, pool: int = 300) -> list[tuple]:
    """``count`` hidden cases from ``pool`` draws, chosen so that every mistaken model earns nothing on at least
    ``quota`` of them (a greedy cover, the rarest mistakes first); never a case the notebook shows. Raises RuntimeError if the draws fall short."""
    bank = []
    for _ in range(pool):
        case = _draw(rng)
        if json.dumps(case, sort_keys=True) in SHOWN or best(*case) is None:
            continue
        missed = sorted(n for n, fn in WRONG.items() if credit(case, fn(*case))[0] == 0.0)
        if len(missed) >= 3:
            bank.append((case, missed))
    rarity = {n: 1 / max(1, sum(n in missed for _, missed in bank)) for n in WRONG}  # rare mistakes first
    return greedy_cover(bank, WRONG, count, quota, "plan_parallelism",
                        lambda missed, misses: (sum(rarity[n] for n in missed if misses[n] < quota), len(missed)))


def score(cases: list, outputs: list) -> tuple[float, str]:
    """(fraction, message): the mean credit over the cases; the same answer for three or more cases scores 0 unless
    it earns full credit everywhere."""
    judged = [credit(tuple(case), out) for case, out in zip(cases, outputs)]
    fraction = sum(c for c, _ in judged) / len(judged) if judged else 0.0
    if fraction < 1 and len(outputs) >= 3 and len({json.dumps(o, sort_keys=True) for o in outputs}) == 1:
        return 0.0, f"the same plan for all {len(outputs)} cases: {str(outputs[0])[:80]}"
    problems = [m for _, m in judged if m]
    return fraction, (f"{len(problems)} of {len(judged)} cases short of full credit; {problems[0]}" if problems
                      else f"the fastest plan that fits in all {len(judged)} cases")
