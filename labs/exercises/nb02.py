"""Notebook 02 (micro-batching): checks and graded scores of ``idle_fraction`` and ``smallest_m``.

* ``idle_fraction(P, M)`` -> the share of a GPipe step the ranks sit idle, derived by counting slots (0.75 at P=4,
  M=1). Judged against the idle share of *simulated* GPipe timelines (several costs) and, for large P*M, the closed
  form; calling ``labs.idle_fraction`` (the reference) is not an answer.
* ``smallest_m(P, target, forward_ms, backward_ms, link_ms)`` -> the fewest micro-batches for which GPipe on P equal
  stages idles at most ``target`` of the step when every message arrives ``link_ms`` after it is sent. Judged against
  a search on the simulator (``expected_m``), never against a closed form. The hidden cases keep the exact boundary
  at least 0.05 from a whole number (no float rounding decides a case), avoid every shape the notebook shows
  (``SHOWN``), and come in quotas that tell the right answer from the plausible wrong ones (``SMALLEST_M_WRONG``:
  the link forgotten, paid one way or by every micro-batch, the seed's (P-1)/M, B taken equal to F, one micro-batch
  too many or too few): each of those scores 0.3 or less.

Each exercise has one problem function (``idle_problem``, ``smallest_m_problem``: None or what is wrong) used by both
the visible check (``_common.check``, which judges the outputs after leaving the forbidden-reference guard, so a
problem may use any labs function) and the graded score; each declares plausible wrong answers (``wrong=``) to the
degenerate-answer rule. The notebook's verdicts are in ``labs.exercises.verdicts02``.
"""
from __future__ import annotations

import math
import random

from labs.exercises._common import check, exercise, score_cases, special
from labs.grading import Graded
from labs.schedules import gpipe
from labs.timeline import Costs, simulate

__all__ = ["GRADED", "IDLE_CHECK_CASES", "IDLE_REFERENCE", "IDLE_WRONG", "M_MAX", "OVERHEAD_REFERENCE", "SHOWN",
           "SIMULATED_COSTS", "SMALLEST_M_CHECK_CASES", "SMALLEST_M_FORBIDDEN", "SMALLEST_M_WRONG", "TOLERANCE",
           "check_idle_fraction", "check_smallest_m", "draw_smallest_m_case", "expected_m", "idle_cases",
           "idle_problem", "idle_score", "reveal_smallest_m", "simulated_idle", "simulated_link_idle",
           "smallest_m_cases", "smallest_m_problem", "smallest_m_score"]

TOLERANCE = 1e-9
IDLE_REFERENCE = "labs.theory.idle_fraction"
OVERHEAD_REFERENCE = "labs.theory.bubble_overhead"  # gives the idle share too: idle = overhead / (1 + overhead)
SIMULATED_COSTS = [(1.0, 2.0), (2.0, 1.0), (1.0, 3.0)]


def _number(where: str, got):
    message = special(where, got)
    if message:
        return None, message
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        return None, f"{where} returned {got!r}, expected a number"
    return float(got), None


# ---------------------------------------------------------------- idle_fraction
def simulated_idle(P: int, M: int, forward_s: float = 1.0, backward_s: float = 2.0) -> float:
    """The idle share of a simulated GPipe step on equal stages: what ``idle_fraction`` must predict."""
    return simulate(gpipe(P, M), Costs(forward_s, backward_s)).idle_fraction


IDLE_WRONG = {"(P-1)/M, the bubble over the ideal time": lambda P, M: (P - 1) / M,
              "a percentage": lambda P, M: 100 * (P - 1) / (M + P - 1),
              "the busy share": lambda P, M: M / (M + P - 1),
              "(P-1)/(M+P), one slot too many": lambda P, M: (P - 1) / (M + P)}


@exercise("idle_fraction", wrong=IDLE_WRONG)
def idle_problem(case, got):
    P, M = case
    where = f"idle_fraction({P}, {M})"
    value, message = _number(where, got)
    if message:
        return message
    closed = (P - 1) / (M + P - 1)
    wants = [("the idle share of the step", closed)]
    if P * M <= 64:
        wants = [(f"the idle share of a simulated GPipe step (F={f:g}, B={b:g})", simulated_idle(P, M, f, b))
                 for f, b in SIMULATED_COSTS]
    for what, want in wants:
        if abs(value - want) > TOLERANCE * max(1.0, abs(want)):
            hint = ""
            if abs(value - 100 * want) <= 1e-6 * max(1.0, 100 * abs(want)):
                hint = " (return a ratio, not a percentage)"
            elif M and abs(value - (P - 1) / M) <= TOLERANCE:
                hint = (" - that is (P-1)/M, the bubble relative to the ideal time M(F+B), not a share of the step: "
                        "count the slots of the whole step")
            elif abs(value - (1 - want)) <= TOLERANCE:
                hint = " - that is the busy share; the idle share is what is left"
            return f"{where} returned {value:.6g}, expected {want:.6g} ({what}){hint}"
    return None


IDLE_CHECK_CASES = [(4, 8), (4, 16), (2, 3), (8, 32), (4, 1)]


def check_idle_fraction(fn) -> bool:
    return check(fn, IDLE_CHECK_CASES, idle_problem, "idle_fraction", "labs.idle_fraction",
                 forbidden=(IDLE_REFERENCE, OVERHEAD_REFERENCE),
                 passed=f"idle_fraction: {len(IDLE_CHECK_CASES)} cases match the idle share of simulated "
                        f"GPipe steps, e.g. P=4, M=8 -> 3/11 = 0.27 -> correct")


def idle_cases(rng) -> list[tuple]:
    grid = [(P, M) for P in range(1, 13) for M in (1, 2, 3, 4, 5, 7, 8, 16, 32, 64, 100)]
    return grid + [(rng.randint(2, 64), rng.randint(1, 512)) for _ in range(20)]


def idle_score(cases, outputs):
    return score_cases(cases, outputs, idle_problem)


# ---------------------------------------------------------------- smallest_m
M_MAX = 200
SMALLEST_M_FORBIDDEN = (IDLE_REFERENCE, OVERHEAD_REFERENCE, "labs.timeline.simulator.simulate",
                        "labs.course.timing.replay", "labs.theory.slow_link_extra_s", "labs.viz.explorer.explore",
                        "labs.viz.explorer.explorer", "labs.exercises.nb02.expected_m",
                        "labs.exercises.nb02.simulated_link_idle", "labs.exercises.nb02._idle",
                        "labs.exercises.nb02._expected")


def simulated_link_idle(P: int, M: int, forward_ms: float, backward_ms: float, link_ms: float) -> float:
    """The idle share of GPipe on P equal stages, simulated, every message arriving ``link_ms`` after it is sent."""
    return simulate(gpipe(P, M), Costs(forward_ms, backward_ms, link_s=link_ms)).idle_fraction


_IDLE: dict = {}  # simulated idle shares already computed: a score asks for the same ones many times


def _idle(P, M, F, B, link) -> float:
    key = (P, M, F, B, link)
    if key not in _IDLE:
        _IDLE[key] = simulated_link_idle(*key)
    return _IDLE[key]


def expected_m(P: int, target: float, forward_ms: float, backward_ms: float, link_ms: float) -> int:
    """The grader's answer, decided by the simulator: the smallest M whose simulated idle share is at most
    ``target`` (M_MAX if even that many micro-batches miss it). The idle share falls as M grows, so an M that meets
    the target while M-1 misses it is the answer: the closed form's candidate is tried first (two simulations), and
    when the simulator does not confirm it, a search decides (double M until the target is met, then bisect)."""
    def meets(M: int) -> bool:
        return _idle(P, M, forward_ms, backward_ms, link_ms) <= target + 1e-12
    guess = min(M_MAX, max(1, math.ceil(_boundary(P, target, forward_ms, backward_ms, link_ms) - 1e-9)))
    if meets(guess) and (guess == 1 or not meets(guess - 1)):
        return guess
    high = 1
    while not meets(high):
        if high >= M_MAX:
            return M_MAX
        high = min(2 * high, M_MAX)
    low = high // 2  # misses the target (0 when M = 1 meets it)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if meets(middle) else (middle, high)
    return high


_EXPECTED: dict = {}  # the grader's answers per case (a dozen simulations each), asked for by every wrong answer


def _expected(P, target, F, B, link) -> int:
    key = (P, target, F, B, link)
    if key not in _EXPECTED:
        _EXPECTED[key] = expected_m(*key)
    return _EXPECTED[key]


def _per_message_link(P, target, F, B, link):
    """The link charged by every micro-batch on every hop (a plausible mistake; no M may be enough)."""
    for M in range(1, M_MAX + 1):
        if 1 - M * (F + B) / ((M + P - 1) * (F + B) + 2 * (P - 1) * M * link) <= target:
            return M
    return M_MAX


SMALLEST_M_WRONG = {
    "the link forgotten": lambda P, t, F, B, link: _expected(P, t, F, B, 0),
    "the seed's (P-1)/M <= target": lambda P, t, F, B, link: max(1, math.ceil((P - 1) / t - 1e-9)),
    "the link paid one way only": lambda P, t, F, B, link: _expected(P, t, F, B, link / 2),
    "the link paid by every micro-batch": _per_message_link,
    "B taken equal to F": lambda P, t, F, B, link: _expected(P, t, F, F, link),
    "one micro-batch too many": lambda P, t, F, B, link: _expected(P, t, F, B, link) + 1,
    "the largest M that misses the target": lambda P, t, F, B, link: max(1, _expected(P, t, F, B, link) - 1)}


def _smallest_m_key(case) -> tuple:
    return case[0], case[4]  # (P, link): one rank or a free link hides most mistakes


def _where(case) -> str:
    return f"smallest_m({', '.join(f'{x:g}' for x in case)})"


# Declared to the degenerate-answer rule: the two that cost no search of their own ("one too many" is wrong on every
# case, so no case is trivial through this list; one rank and a target one micro-batch meets are trivial through
# the canonical answer 1). The tests score every one of SMALLEST_M_WRONG.
@exercise("smallest_m", where=_where, key=_smallest_m_key,
          wrong={name: SMALLEST_M_WRONG[name] for name in ("the seed's (P-1)/M <= target", "one micro-batch too many")})
def smallest_m_problem(case, got):
    P, target, F, B, link = case
    where = _where(case)
    message = special(where, got)
    if message:
        return message
    if isinstance(got, bool) or not isinstance(got, (int, float)) or not float(got).is_integer():
        return f"{where} returned {got!r}, expected a whole number of micro-batches"
    got = int(got)
    want = _expected(P, target, F, B, link)
    if got == want:
        return None
    if got < 1:
        return f"{where} returned {got}; a step has at least one micro-batch"
    if got > want:
        return (f"{where} returned {got}; fewer do: M={want} already idles "
                f"{_idle(P, want, F, B, link):.4f} <= {target:g} in the simulator")
    return (f"{where} returned {got}; at M={got} the simulated step idles "
            f"{_idle(P, got, F, B, link):.4f} > {target:g}")


SMALLEST_M_CHECK_CASES = [(4, 0.15, 10, 20, 5), (8, 0.2, 10, 20, 10), (2, 0.3, 20, 40, 0), (3, 0.22, 10, 30, 20),
                          (1, 0.1, 10, 20, 5)]
# every shape the notebook shows: the check's cases and the table printed after it (never graded)
SHOWN = SMALLEST_M_CHECK_CASES + [(4, 0.15, 10, 20, link) for link in (0, 10, 20)]


def check_smallest_m(fn) -> bool:
    return check(fn, SMALLEST_M_CHECK_CASES, smallest_m_problem, "smallest_m", "a search on the simulator",
                 forbidden=SMALLEST_M_FORBIDDEN,
                 passed=f"smallest_m: {len(SMALLEST_M_CHECK_CASES)} cases (P=1 to 8, links of 0 to 2 forwards) match "
                        f"a search on the simulator -> correct")


def reveal_smallest_m(ok: bool) -> bool:
    """After the check: where GPipe pays the link, and the closed form, printed only once ``smallest_m`` passed."""
    from labs.exercises._carry_on import reveal
    return reveal(ok, "Where the link is paid: the first forward crosses the P-1 links on its way to the last rank "
                      "and the last backward crosses them back; every other message travels while the next forward "
                      "(or backward) runs, hidden.\n  step = (M+P-1)(F+B) + 2(P-1)*link, each rank busy M(F+B), so "
                      "idle <= t  <=>  M >= (P-1)(F+B+2*link)(1-t) / (t(F+B)),\n  rounded up. Doubling M does not "
                      "move the link's cost: like the fill and the drain, it is paid once per step.", "smallest_m")


def _boundary(P, target, F, B, link) -> float:
    """The real-valued M at which idle == target (case selection only: keeps cases off whole-number boundaries)."""
    return (P - 1) * (F + B + 2 * link) * (1 - target) / (target * (F + B))


def draw_smallest_m_case(rng: random.Random, link_share=None, backward_share=None) -> tuple:
    """(P, target, F, B, link) with an answer in 2..M_MAX-1, the boundary at least 0.05 from a whole number and not a
    shape in SHOWN; ``link_share`` (link / F) and ``backward_share`` (B / F) fixed when given, else drawn."""
    while True:
        P = rng.randint(2, 12)
        F = rng.choice([5, 10, 20, 30])
        B = F * (backward_share or rng.choice([1, 2, 3]))
        link = F * (rng.choice([0, 0.25, 0.5, 1, 2, 3]) if link_share is None else link_share)
        target = rng.choice([0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3])
        edge = _boundary(P, target, F, B, link)
        case = (P, target, F, B, link)
        if 2 <= edge <= M_MAX - 1 and min(edge - math.floor(edge), math.ceil(edge) - edge) >= 0.05 \
                and case not in SHOWN:
            return case


def smallest_m_cases(rng) -> list[tuple]:
    """14 drawn cases in quotas that tell the plausible mistakes apart (2 with a free link, where forgetting the link
    is right; 2 with B = F; 10 with a link and B = 2F or 3F), then 2 trivial ones (one rank; a target that one
    micro-batch meets)."""
    drawn = [draw_smallest_m_case(rng, link_share=0, backward_share=rng.choice([2, 3])) for _ in range(2)]
    drawn += [draw_smallest_m_case(rng, link_share=rng.choice([0.25, 0.5, 1, 2, 3]), backward_share=1)
              for _ in range(2)]
    drawn += [draw_smallest_m_case(rng, link_share=rng.choice([0.25, 0.5, 1, 2, 3]), backward_share=rng.choice([2, 3]))
              for _ in range(10)]
    rng.shuffle(drawn)
    return drawn + [(1, 0.12, 20, 40, 10), (4, 0.8, 10, 20, 0)]


def smallest_m_score(cases, outputs):
    return score_cases(cases, outputs, smallest_m_problem)


GRADED = [Graded(name="idle_fraction", points=1, cases=idle_cases, score=idle_score,
                 forbidden=(IDLE_REFERENCE, OVERHEAD_REFERENCE)),
          Graded(name="smallest_m", points=2, cases=smallest_m_cases, score=smallest_m_score,
                 forbidden=SMALLEST_M_FORBIDDEN)]
