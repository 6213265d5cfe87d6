"""Notebook 06 (memory): checks and graded score of ``stage_saved_bytes``, and the notebook's printed verdicts.

``stage_saved_bytes(ops, microbatch_size, width, last_stage=False)`` predicts the bytes autograd keeps for one
micro-batch through a stage built from layer types the notebook never measured: ``ops`` is a list of
``["linear", out_features]``, ``["relu"]``, ``["sigmoid"]``, ``["tanh"]``, ``["gelu"]``, ``["silu"]`` and
``["layernorm"]`` (float32; the stage's input is a received tensor of ``width`` features; parameters excluded; on the
last stage also the course's MSE loss against a target shaped like the output). The notebook teaches the principle on
Linear + Tanh only (an op keeps what its backward formula needs; a storage kept twice counts once). The expected
value is *measured* by the grader on the real modules at micro-batch 1 and 2 (bytes are linear in the micro-batch:
asserted) and scaled, so hidden micro-batches can be far too large to run. Calling ``labs.models.memory.saved_bytes``
(or the grader's measurement) is not an answer.
"""
from __future__ import annotations

import functools
import random

import torch
from torch import nn

from labs.course.verdicts import case, verdict
from labs.exercises._common import check, exercise, score_cases
from labs.grading import Graded
from labs.models import loss_fn, saved_bytes

__all__ = ["CHECK_CASES", "FORBIDDEN", "GRADED", "WRONG", "build_stage", "call_with_keyword", "check_stage_saved_bytes",
           "closest_is", "grows_with_m", "flat_from", "held_cost", "measured_stage_bytes", "peaks_are", "predict",
           "bytes_problem", "slower_by", "same_bytes"]

FORBIDDEN = ("labs.models.memory.saved_bytes", "labs.models.memory.SavedBytes.counting",
             "labs.exercises.nb06.measured_stage_bytes", "labs.exercises.nb06.predict")
ELEMENTWISE = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}
TOY = [["linear", 64], ["tanh"], ["linear", 64], ["tanh"]]  # notebook 04's 2-layer stage, the worked example
CHECK_CASES = [(TOY, 8, 64, False), (TOY, 8, 64, True), ([["tanh"], ["linear", 32]], 4, 32, False),
               ([["linear", 128], ["relu"], ["linear", 32]], 8, 32, False),
               ([["layernorm"], ["linear", 64], ["gelu"]], 2, 64, False), ([["linear", 64], ["sigmoid"]], 4, 16, True)]


def build_stage(ops, width: int) -> tuple:
    """(nn.Sequential of ``ops``, output features). Raises ValueError for an op it does not know."""
    modules, features = [], width
    for op in ops:
        if op[0] == "linear":
            modules.append(nn.Linear(features, int(op[1])))
            features = int(op[1])
        elif op[0] == "layernorm":
            modules.append(nn.LayerNorm(features))
        elif op[0] in ELEMENTWISE:
            modules.append(ELEMENTWISE[op[0]]())
        else:
            raise ValueError(f"unknown op {op!r}: use linear, layernorm, {', '.join(ELEMENTWISE)}")
    return nn.Sequential(*modules), features


@functools.lru_cache(maxsize=None)
def _measured(key: str, microbatch_size: int, width: int, last_stage: bool) -> int:
    ops = [[name, int(size)] if size else [name] for name, _, size in (op.partition(":") for op in key.split(","))]
    stage, features = build_stage(ops, width)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(microbatch_size, width, generator=generator).requires_grad_()
    target = torch.randn(microbatch_size, features, generator=generator)

    def forward(inputs):
        out = stage(inputs)
        return loss_fn(out, target) / 4 if last_stage else out  # the runtime divides the loss by M

    return saved_bytes(forward, x, exclude=list(stage.parameters()))[1]


def measured_stage_bytes(ops, microbatch_size: int, width: int, last_stage: bool = False) -> int:
    """Bytes autograd saved for one micro-batch through the real stage, measured at micro-batch 1 and 2 and scaled
    (AssertionError if they are not exactly linear)."""
    key = ",".join(f"{op[0]}:{op[1]}" if len(op) == 2 else op[0] for op in ops)
    one, two = _measured(key, 1, width, last_stage), _measured(key, 2, width, last_stage)
    assert two == 2 * one, f"saved bytes not linear in the micro-batch for {ops}"
    return one * microbatch_size


def call_with_keyword(fn, ops, microbatch_size: int, width: int, last_stage: bool):
    """Kernel side: ``last_stage`` goes in by keyword, as the exercise's signature shows it."""
    return fn(ops, microbatch_size, width, last_stage=last_stage)


# ---------------------------------------------------------------- the grader's model of the mistakes
KEEPS_OUTPUT = {"relu", "sigmoid", "tanh"}  # derivative from the output: 1[y>0], y(1-y), 1-y^2


def predict(ops, b, width, last, keeps_output=KEEPS_OUTPUT, share=True, stats=True, loss_input=True) -> int:
    """The rule (and, with a flag changed, a plausible mistake): bytes from what each op's backward needs."""
    saved, current, size, fresh = {}, 0, width, 1

    def keep(tensor, elements):
        saved[tensor if share else ("own", len(saved))] = elements

    for op in ops:
        if op[0] == "linear":
            keep(current, size)
            current, size, fresh = fresh, int(op[1]), fresh + 1
        elif op[0] == "layernorm":
            keep(current, size)
            if stats:
                saved[("stats", fresh)] = 2  # mean and 1/std per sample
            current, fresh = fresh, fresh + 1
        elif op[0] in keeps_output:
            current, fresh = fresh, fresh + 1
            keep(current, size)
        else:
            keep(current, size)
            current, fresh = fresh, fresh + 1
    if last:
        if loss_input:
            keep(current, size)
        saved[("target",)] = size
    return 4 * b * sum(saved.values())


WRONG = {"k+1 rule for every activation": lambda o, b, w, l: predict(o, b, w, l, keeps_output=set(ELEMENTWISE)),
         "every activation keeps its input": lambda o, b, w, l: predict(o, b, w, l, keeps_output=set()),
         "no sharing of storages": lambda o, b, w, l: predict(o, b, w, l, share=False),
         "LayerNorm's statistics forgotten": lambda o, b, w, l: predict(o, b, w, l, stats=False),
         "the loss keeps only the target": lambda o, b, w, l: predict(o, b, w, l, loss_input=False),
         "linear outputs width wide": lambda o, b, w, l: predict([["linear", w] if op[0] == "linear" else op
                                                                  for op in o], b, w, l)}


def _where(case) -> str:
    ops, b, width, last = case
    return f"stage_saved_bytes({ops}, {b}, {width}, last_stage={last})"


@exercise("stage_saved_bytes", where=_where, key=lambda case: (case[1], case[2]), wrong=WRONG)
def bytes_problem(case, got) -> str | None:
    where = _where(case)
    if isinstance(got, bool) or not isinstance(got, int):
        return f"{where} returned {got!r}, expected a whole number of bytes"
    want = measured_stage_bytes(*case)
    return None if got == want else f"{where} predicted {got} bytes, measured {want}"


def check_stage_saved_bytes(fn) -> bool:
    return check(fn, CHECK_CASES, bytes_problem, "stage_saved_bytes", "labs.models.memory.saved_bytes",
                 forbidden=FORBIDDEN, call=call_with_keyword,
                 passed=f"stage_saved_bytes: {len(CHECK_CASES)} predictions equal the measured bytes exactly -> correct")


def _draw(rng: random.Random) -> tuple:
    width = rng.choice([64, 96, 128, 256])
    ops = []
    for _ in range(rng.randint(2, 6)):
        kind = rng.choice(["linear", "linear", "relu", "sigmoid", "tanh", "gelu", "silu", "layernorm"])
        ops.append(["linear", rng.choice([width, 2 * width, 4 * width])] if kind == "linear" else [kind])
    return ops, rng.choice([3, 2 ** 16, 2 ** 18, 3 * 2 ** 17]), width, rng.random() < 0.4


def _cases(rng, count: int = 14, tries: int = 3000) -> list[tuple]:
    """``count`` drawn stages on each of which at least all but one of the plausible mistakes are wrong."""
    kept = []
    for _ in range(tries):
        drawn = _draw(rng)
        want = measured_stage_bytes(*drawn)
        if sum(fn(*drawn) != want for fn in WRONG.values()) >= len(WRONG) - 1:
            kept.append(drawn)
            if len(kept) == count:
                return kept
    raise RuntimeError(f"only {len(kept)} discriminating stages in {tries} draws")


GRADED = [Graded(name="stage_saved_bytes", points=3, cases=_cases,
                 score=lambda cases, outputs: score_cases(cases, outputs, bytes_problem),
                 run="labs.exercises.nb06:call_with_keyword", forbidden=FORBIDDEN)]


# ---------------------------------------------------------------- the notebook's printed verdicts
@verdict(holds=[case({2: [12288, 16384], 4: [24576, 32768], 16: [98304, 131072]})],
         fails=[case({2: [12288, 8192], 4: [24576, 8192], 16: [24576, 8192]}, why="1F1B's bytes (flat) taken for GPipe's"),
                case({2: [12288], 4: [24576], 16: [98304 + 2048]}, why="one tensor more at M=16")])
def grows_with_m(bytes_by_m: dict) -> bool:
    """Every rank's bytes are exactly proportional to M: ``bytes_by_m`` {M: [bytes per rank]}."""
    first = min(bytes_by_m)
    return all(b * first == bytes_by_m[first][r] * m for m, row in bytes_by_m.items() for r, b in enumerate(row))


@verdict(holds=[case({2: [12288, 8192], 4: [24576, 8192], 16: [24576, 8192]}, 4)],
         fails=[case({2: [12288, 16384], 4: [24576, 32768], 16: [98304, 131072]}, 4, why="GPipe's bytes (linear in M)"),
                case({4: [24576], 8: [24576], 16: [26624]}, 4, why="one tensor more at M=16")])
def flat_from(bytes_by_m: dict, P: int) -> bool:
    """Every rank's bytes are the same for every M >= P: ``bytes_by_m`` {M: [bytes per rank]}."""
    rows = [row for m, row in bytes_by_m.items() if m >= P]
    return len(rows) >= 2 and all(row == rows[0] for row in rows)


@verdict(holds=[case(4.83, 4.83), case([4.8, 4.8], [4.8, 4.8])],
         fails=[case(19.3, 4.8, why="GPipe at M=32 against GPipe at M=8 (the 4:1 ratio)"),
                case(1101.7, 275.4, why="GPipe at M=32 against the paper's 1F1B first stage")])
def same_bytes(first, second, rel: float = 1e-9) -> bool:
    """Two byte counts (numbers, or lists of numbers) agree to ``rel``."""
    pairs = zip(first, second) if isinstance(first, (list, tuple)) else [(first, second)]
    return all(abs(a - b) <= rel * max(abs(a), abs(b)) for a, b in pairs)


@verdict(holds=[case(0.162, 0.105, 0.10)],
         fails=[case(0.106, 0.105, 0.10, why="a checkpointed backward that recomputed nothing"),
                case(0.080, 0.105, 0.10, why="a checkpointed backward faster than the plain one")])
def slower_by(slow_s: float, fast_s: float, margin: float) -> bool:
    """``slow_s`` is more than (1 + margin) times ``fast_s`` (seconds)."""
    return slow_s > (1 + margin) * fast_s


def _miss(pair, target) -> float:
    return max(max(a / t, t / a) for a, t in zip(pair, target))


@verdict(holds=[case({"a": (4.83, 1.21), "b": (19.3, 4.8)}, (4, 1), "a")],
         fails=[case({"a": (4.83, 1.21), "b": (19.3, 4.8)}, (4, 1), "b", why="a farther option named closest"),
                case({"a": (4.83, 1.21), "b": (4.0, 1.0)}, (4, 1), "a", why="an exact option beside it")])
def closest_is(options: dict, target: tuple, expected) -> bool:
    """``expected`` is the option whose values are nearest ``target`` (worst factor over the values)."""
    return min(options, key=lambda key: _miss(options[key], target)) == expected


# recompute measured on real ranks (toy: P=4 stages of k=4 layers, micro-batches of 8 x 64 float32, T = 2048 bytes)
_T, _K = 2048, 4
_PLAIN = [(_K + 1) * _T] * 3 + [(_K + 2) * _T]  # what a held micro-batch keeps without recompute
_INPUT = [_T] * 3 + [3 * _T]  # with recompute: the stage's input (the last stage: the loss's output and target too)
_REBUILT = [_K * _T] * 3 + [(_K - 2) * _T]  # what a backward adds while it reruns the stage's forward
_GPIPE_RECOMPUTE = {m: [m * c + t for c, t in zip(_INPUT, _REBUILT)] for m in (4, 8)}
_GPIPE_PLAIN = {m: [m * c for c in _PLAIN] for m in (4, 8)}


@verdict(holds=[case(_GPIPE_RECOMPUTE, _INPUT), case(_GPIPE_PLAIN, _PLAIN)],
         fails=[case(_GPIPE_PLAIN, _INPUT, why="no recompute: every held micro-batch keeps its k+1 tensors"),
                case(_GPIPE_RECOMPUTE, [_T] * 4, why="the last stage's loss output and target forgotten"),
                case({4: _GPIPE_RECOMPUTE[4], 8: _GPIPE_RECOMPUTE[4]}, _INPUT, why="bytes flat in M (1F1B's shape)")])
def held_cost(bytes_by_m: dict, per_microbatch: list) -> bool:
    """Every rank's peak grows by exactly ``per_microbatch[r]`` bytes per micro-batch held: ``bytes_by_m`` {M: [bytes
    per rank]} at two or more M, with M micro-batches held (GPipe)."""
    ms = sorted(bytes_by_m)
    return len(ms) >= 2 and all(
        later[r] - earlier[r] == (m2 - m1) * per_microbatch[r] for m1, m2 in zip(ms, ms[1:])
        for earlier, later in [(bytes_by_m[m1], bytes_by_m[m2])] for r in range(len(per_microbatch)))


@verdict(holds=[case(_GPIPE_RECOMPUTE[8], [8] * 4, _INPUT, _REBUILT),
                case([4 * _T + _K * _T, 3 * _T + _K * _T, 2 * _T + _K * _T, 3 * _T + (_K - 2) * _T], [4, 3, 2, 1],
                     _INPUT, _REBUILT)],
         fails=[case([8 * c for c in _INPUT], [8] * 4, _INPUT, _REBUILT, why="no transient: nothing rebuilt in a backward"),
                case([8 * c + t + _T for c, t in zip(_INPUT, _REBUILT)], [8] * 4, _INPUT, _REBUILT,
                     why="the rebuilt set counted with a second copy of the input"),
                case(_GPIPE_PLAIN[8], [8] * 4, _INPUT, _REBUILT, why="the run without recompute")])
def peaks_are(peaks: list, held: list, per_microbatch: list, transient: list) -> bool:
    """Every rank's peak bytes equal ``held[r]`` micro-batches times ``per_microbatch[r]`` plus ``transient[r]``
    (what a backward holds on top while it runs), exactly."""
    return len(peaks) == len(held) and all(p == h * c + t for p, h, c, t in zip(peaks, held, per_microbatch, transient))
