"""Notebook 07 (communication): checks and graded scores of ``traffic`` and ``gpipe_step_on_link``, and the verdicts
the notebook prints, each registered with the planted inputs that make it False.

* ``traffic(owners, M, microbatch_bytes)`` -> ``(messages, bytes)`` one training step sends between ranks when stage s
  lives on rank ``owners[s]`` (any placement: round-robin, a V, blocks of chunks, arbitrary), M micro-batches, one
  boundary tensor ``microbatch_bytes`` bytes. Expected: counted by the simulator on a GPipe order over those owners.
* ``gpipe_step_on_link(P, M, forward_ms, backward_ms, latency_ms, transfer_ms)`` -> GPipe's step in ms on P equal
  stages when every message between neighbouring ranks occupies its link for ``transfer_ms`` (one message at a time
  per direction) and arrives ``latency_ms`` after leaving it. Expected: the simulator with that ``labs.Link``.

Hidden cases are drawn so that each exposes the plausible mistakes (``TRAFFIC_WRONG``, ``STEP_WRONG``); the shapes
the notebook shows (``SHOWN``) are never graded.
"""
from __future__ import annotations

import math
import random

from labs.course.verdicts import case, verdict
from labs.exercises._common import check, exercise, score_cases
from labs.grading import Graded
from labs.schedules import Action, ScheduleError, gpipe, validate
from labs.timeline import Costs, Link, Network, simulate

__all__ = ["GRADED", "SHOWN", "STEP_CHECK_CASES", "STEP_WRONG", "TRAFFIC_CHECK_CASES", "TRAFFIC_WRONG",
           "check_gpipe_step_on_link", "check_traffic", "counted_traffic", "counts_match", "line_explains_every_size",
           "link_sets_pace", "matches_every_case", "one_parameter_models_miss", "queue_costs_nothing",
           "simulated_step_ms", "slow_link_cost_matches", "step_problem", "stretch_exceeds", "traffic_problem",
           "validator_accepts"]

FORBIDDEN = ("labs.theory.traffic", "labs.timeline.simulator.simulate", "labs.exercises.nb07.counted_traffic",
             "labs.exercises.nb07.simulated_step_ms", "labs.viz.explorer.explore")
_NBYTES = 1_000_000  # the message size the expected step is simulated with (the link's bandwidth follows T)


# ---------------------------------------------------------------- exercise 1: traffic for any placement (1 point)
def counted_traffic(owners: list, M: int, microbatch_bytes: int) -> tuple[int, int]:
    """Counted, not computed: (messages, bytes) between ranks in a simulated GPipe step over these stage owners."""
    rows: list = [[] for _ in range(max(owners) + 1)]
    for kind, order in (("F", range(len(owners))), ("B", reversed(range(len(owners))))):
        for stage in order:
            for m in range(M):
                rows[owners[stage]].append(Action(stage, kind, m))
    messages = simulate(rows).messages
    return messages, messages * microbatch_bytes


def _crossing(owners) -> int:
    return sum(a != b for a, b in zip(owners, owners[1:]))


TRAFFIC_WRONG = {  # plausible mistakes, each a function of the case
    "every boundary crosses": lambda o, M, n: [2 * (len(o) - 1) * M, 2 * (len(o) - 1) * M * n],
    "P-1 boundaries": lambda o, M, n: [2 * max(o) * M, 2 * max(o) * M * n],
    "forward only": lambda o, M, n: [_crossing(o) * M, _crossing(o) * M * n],
    "each pair of ranks once": lambda o, M, n: [2 * len({frozenset(p) for p in zip(o, o[1:]) if p[0] != p[1]}) * M,
                                                2 * len({frozenset(p) for p in zip(o, o[1:]) if p[0] != p[1]}) * M * n],
}


@exercise("traffic", trivial=lambda case_: [[0, 0]], wrong=TRAFFIC_WRONG)  # degenerate answers: labs.exercises._credit
def traffic_problem(case_, got) -> str | None:
    owners, M, nbytes = case_
    want = list(counted_traffic(owners, M, nbytes))
    where = f"traffic(owners={owners}, M={M}, {nbytes})"
    if not (isinstance(got, list) and len(got) == 2 and all(isinstance(x, (int, float)) for x in got)):
        return f"{where} returned {str(got)[:80]}, expected a pair (messages, bytes)"
    if list(got) == want:
        return None
    hint = ""
    if got[0] == want[0] // 2:
        hint = " - each crossing carries something back as well"
    elif got[0] == TRAFFIC_WRONG["every boundary crosses"](owners, M, nbytes)[0]:
        hint = " - look at which neighbouring stages share a rank"
    return f"{where} returned {tuple(got)}, counted {tuple(want)} (messages, bytes){hint}"


TRAFFIC_CHECK_CASES = [([0, 1, 2, 3], 8, 2048), ([0, 1, 0, 1], 4, 100), ([0, 0, 1, 1, 2, 2], 3, 512),
                       ([0, 1, 1, 0], 2, 64), ([0, 0, 0], 5, 8)]


def check_traffic(fn) -> bool:
    return check(fn, TRAFFIC_CHECK_CASES, traffic_problem, "traffic", "labs' count", forbidden=FORBIDDEN,
                 passed=f"traffic: {len(TRAFFIC_CHECK_CASES)} placements match the messages a simulated step sends "
                        f"-> correct")


def _placement(rng) -> list:
    P, v = rng.randint(2, 5), rng.randint(1, 3)
    kind = rng.choice(["round-robin", "V", "blocks", "random"])
    if kind == "round-robin":
        return [s % P for s in range(P * v)]
    if kind == "V":
        return [s if s < P else 2 * P - 1 - s for s in range(2 * P)]
    if kind == "blocks":
        return [s // v for s in range(P * v)]
    while True:  # arbitrary, every rank holding at least one stage
        owners = [rng.randrange(P) for _ in range(P * v + rng.randint(0, 2))]
        if set(owners) == set(range(P)):
            return owners


def _traffic_cases(rng) -> list[tuple]:
    shown = {(tuple(o), M) for o, M, _ in TRAFFIC_CHECK_CASES} | {(tuple(s % 4 for s in range(8)), 8)}
    cases = [([0, 0, 0, 0], rng.randint(2, 9), 4 * rng.randint(1, 999))]  # one rank: trivial, must still be right
    while len(cases) < 17:
        owners, M, nbytes = _placement(rng), rng.randint(2, 12), 4 * rng.randint(1, 4096)
        failing = sum(fn(owners, M, nbytes) != list(counted_traffic(owners, M, nbytes)) for fn in TRAFFIC_WRONG.values())
        if failing >= 3 and (tuple(owners), M) not in shown:
            cases.append((owners, M, nbytes))
    return cases


# ---------------------------------------------------------------- exercise 2: GPipe's step on a real link (2 points)
def simulated_step_ms(P, M, forward_ms, backward_ms, latency_ms, transfer_ms) -> float:
    """GPipe's simulated step (ms) when every message takes ``transfer_ms`` on its link (one at a time per direction)
    and arrives ``latency_ms`` after leaving it: the grader's expected value."""
    link = Link(latency_ms=latency_ms, bandwidth_mb_s=None if transfer_ms == 0 else _NBYTES / transfer_ms / 1e3)
    costs = Costs(forward_ms / 1000, backward_ms / 1000, network=Network(link), message_bytes=_NBYTES)
    return simulate(gpipe(P, M), costs).step_time_s * 1000


def _fill_drain(P, M, F, B, L, T, pace=True, link_back=True):
    forward = P * F + (P - 1) * (T + L) + (M - 1) * (max(F, T) if pace else F)
    backward = P * B + ((P - 1) * (T + L) if link_back else 0) + (M - 1) * (max(B, T) if pace and link_back else B)
    return forward + backward if P > 1 else M * (F + B)


STEP_WRONG = {
    "the transfer taken for more latency": lambda P, M, F, B, L, T: _fill_drain(P, M, F, B, L, T, pace=False),
    "the latency queued with the transfer": lambda P, M, F, B, L, T: _fill_drain(P, M, F, B, 0, T + L),
    "every message pays in full": lambda P, M, F, B, L, T: (M + P - 1) * (F + B) + 2 * (P - 1) * M * (L + T),
    "every slot at the pace": lambda P, M, F, B, L, T: (M + P - 1) * (max(F, T) + max(B, T)) + 2 * (P - 1) * (L + T),
    "the gradients' link forgotten": lambda P, M, F, B, L, T: _fill_drain(P, M, F, B, L, T, link_back=False),
}


@exercise("gpipe_step_on_link", trivial=lambda case_: [case_[1] * (case_[2] + case_[3])], wrong=STEP_WRONG)
def step_problem(case_, got) -> str | None:
    where = f"gpipe_step_on_link{tuple(case_)}"
    if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got):
        return f"{where} returned {str(got)[:80]}, expected milliseconds"
    want = simulated_step_ms(*case_)
    if abs(got - want) <= 1e-6 * max(1.0, want):
        return None
    hint = ""
    if abs(got - STEP_WRONG["the transfer taken for more latency"](*case_)) < 1e-6 * want and case_[5] > case_[2]:
        hint = " - here a message occupies its link longer than a forward takes"
    elif abs(got - STEP_WRONG["the gradients' link forgotten"](*case_)) < 1e-6 * want:
        hint = " - the gradients coming back cross the same links"
    return f"{where} returned {got:.6g} ms; the simulator gives {want:.6g} ms{hint}"


STEP_CHECK_CASES = [(4, 8, 20, 40, 5, 10), (4, 8, 20, 40, 0, 30), (4, 8, 20, 40, 10, 60), (2, 3, 10, 10, 0, 0)]
SHOWN = {"traffic": TRAFFIC_CHECK_CASES, "gpipe_step_on_link": STEP_CHECK_CASES}


def check_gpipe_step_on_link(fn) -> bool:
    return check(fn, STEP_CHECK_CASES, step_problem, "gpipe_step_on_link", "the simulator", forbidden=FORBIDDEN,
                 passed=f"gpipe_step_on_link: {len(STEP_CHECK_CASES)} links match the simulator -> correct")


def _step_cases(rng) -> list[tuple]:
    cases = [(1, rng.randint(2, 9), 10, 20, 5, 3), (rng.randint(2, 6), 1, 10, 20, 0, 0)]  # trivial: no link; M = 1
    while len(cases) < 16:
        P, M, F = rng.randint(2, 8), rng.randint(2, 24), rng.choice([10, 20, 30])
        B = F * rng.choice([1, 2, 3])
        T = rng.choice([0, F / 2, (F + B) / 2, 1.5 * F, 1.5 * B, 2 * B])
        candidate = (P, M, F, B, rng.choice([0, 5, F, 2 * F]), T)
        want = simulated_step_ms(*candidate)
        if candidate not in STEP_CHECK_CASES and all(abs(fn(*candidate) - want) > 1e-6 * want
                                                     for fn in STEP_WRONG.values()):
            cases.append(candidate)
    return cases


GRADED = [Graded(name="traffic", points=1, cases=_traffic_cases, forbidden=FORBIDDEN,
                 score=lambda cases, outputs: score_cases(cases, outputs, traffic_problem)),
          Graded(name="gpipe_step_on_link", points=2, cases=_step_cases, forbidden=FORBIDDEN,
                 score=lambda cases, outputs: score_cases(cases, outputs, step_problem))]


# ---------------------------------------------------------------- the notebook's verdicts
@verdict(holds=[case((48, 98304), (48, 98304))],
         fails=[case((48, 98304), (24, 49152), why="the activations counted, the gradients coming back forgotten"),
                case((112, 229376), (48, 98304), why="interleaving's v*P-1 boundaries counted as P-1")])
def counts_match(measured, predicted) -> bool:
    """(messages, bytes) a run measured equal (messages, bytes) predicted."""
    return tuple(measured) == tuple(predicted)


def _alpha_beta(latency_s=32e-6, bytes_per_s=3.7e9, wobble=0.15, seed=0) -> dict:
    rng = random.Random(seed)
    return {2 ** k: (latency_s + 2 ** k / bytes_per_s) * rng.uniform(1 - wobble, 1 + wobble) for k in range(10, 25, 2)}


def _shuffled() -> dict:
    times = _alpha_beta()
    values = list(times.values())
    random.Random(1).shuffle(values)
    return dict(zip(times, values))


@verdict(holds=[case(_alpha_beta(), 32e-6, 3.7e9), case(_alpha_beta(60e-6, 4.4e9, seed=2), 60e-6, 4.4e9)],
         fails=[case(_shuffled(), 32e-6, 3.7e9, why="the times shuffled over the sizes"),
                case(_alpha_beta(), 320e-6, 3.7e9, why="a latency ten times the measured one"),
                case(_alpha_beta(), 32e-6, 3.7e10, why="a bandwidth ten times the measured one")])
def line_explains_every_size(times: dict, latency_s: float, bytes_per_s: float, factor: float = 3.0) -> bool:
    """Every measured time ({bytes: seconds}) within ``factor`` of latency + size / bandwidth."""
    return all(1 / factor <= t / (latency_s + size / bytes_per_s) <= factor for size, t in times.items())


@verdict(holds=[case(_alpha_beta()), case(_alpha_beta(60e-6, 4.4e9, seed=2))],
         fails=[case({2 ** k: 50e-6 for k in range(10, 25, 2)}, why="every size at the same latency"),
                case({2 ** k: 2 ** k / 4e9 for k in range(10, 25, 2)}, why="pure bandwidth, no latency")])
def one_parameter_models_miss(times: dict, factor: float = 5.0) -> bool:
    """Neither a constant (latency only) nor size / bandwidth alone fits: the best of each misses some size by more
    than ``factor`` (the best constant misses by sqrt(max/min) of the times, the best bandwidth the same on t/size)."""
    per_byte = [t / size for size, t in times.items()]
    constant_miss = math.sqrt(max(times.values()) / min(times.values()))
    bandwidth_miss = math.sqrt(max(per_byte) / min(per_byte))
    return constant_miss > factor and bandwidth_miss > factor


@verdict(holds=[case(0.419, 0.400), case(0.392, 0.400)],
         fails=[case(0.020, 0.400, why="the link's delay bypassed: only the runtime's overhead is left"),
                case(0.419, 0.800, why="the old prose: the link paid twice per micro-batch"),
                case(0.419, 0.100, why="the link paid once per step, as GPipe pays it")])
def slow_link_cost_matches(extra_s: float, predicted_s: float, rel: float = 0.15) -> bool:
    """The seconds a slow link added to the step within ``rel`` of the derived cost (both ways: a link bypassed
    adds nothing, a wrong derivation predicts another number)."""
    return abs(extra_s - predicted_s) <= rel * predicted_s


@verdict(holds=[case([0.4, 0.3, 0.8], [0.4, 0.3, 0.8])],
         fails=[case([0.4, 0.3, 0.8], [0.4, 0.3, 0.4], why="one case off: twice per micro-batch"),
                case([0.1, 0.1], [0.2, 0.2], why="every case off")])
def matches_every_case(simulated: list, predicted: list, tolerance_s: float = 1e-9) -> bool:
    """Each simulated value equal to its predicted one (within ``tolerance_s``), and as many of each."""
    return len(simulated) == len(predicted) and all(abs(a - b) <= tolerance_s for a, b in zip(simulated, predicted))


@verdict(holds=[case(1.24, 1.09), case(1.47, 1.23, 0.15)],
         fails=[case(1.0, 1.0, why="a free link stretches neither"), case(1.09, 1.09, why="the same stretch"),
                case(1.30, 1.18, 0.15, why="1F1B paying half its simulated extra at a 20 ms link")])
def stretch_exceeds(stretch: float, other: float, margin: float = 0.08) -> bool:
    """``stretch`` (step / free-link step) more than ``margin`` above ``other``."""
    return stretch - other > margin


@verdict(holds=[case([1.0, 1.05, 1.1], [1.0, 1.05, 1.1])],
         fails=[case([1.1, 1.2], [1.3, 1.5], why="transfers longer than a forward: the link sets the pace")])
def queue_costs_nothing(latency_only: list, queued: list) -> bool:
    """A link's queue (one message at a time) adds nothing over its latency: the same stretches (within 1e-9)."""
    return len(latency_only) == len(queued) and all(abs(a - b) <= 1e-9 for a, b in zip(latency_only, queued))


@verdict(holds=[case([1.1, 1.2], [1.3, 1.5])],
         fails=[case([1.0, 1.05], [1.0, 1.05], why="transfers shorter than a forward: the queue costs nothing")])
def link_sets_pace(latency_only: list, queued: list, margin: float = 0.05) -> bool:
    """Every queued stretch more than ``margin`` above the latency-only one (the link is the slowest station)."""
    return len(latency_only) == len(queued) and all(b > a + margin for a, b in zip(latency_only, queued))


@verdict(holds=[case([["0F0", "0F1", "0B0", "0B1"], ["1F0", "1B0", "1F1", "1B1"]])],
         fails=[case([["0F0", "0B0", "0F1", "0B1"], ["1F0", "1F1", "1B0", "1B1"]],
                     why="rank 0 waits for 1B0 before 0F1, rank 1 for 0F1 before 1B0: a deadlock")])
def validator_accepts(schedule) -> bool:
    """``labs.validate`` accepts the schedule (it can finish when sends never block)."""
    try:
        validate(schedule)
    except ScheduleError:
        return False
    return True
