"""Flow control (``labs.schedules.flow``): the smallest send window with which a lowered schedule finishes, decided
by one untimed run, and the runtime's window (that plus one)."""
import pytest

from labs.schedules import RECV, SEND, Action, Comm, finishes, lower, make, send_window
from labs.runtime.transport import send_window as runtime_window

CASES = [("gpipe", 4, 16, 1), ("1f1b", 4, 16, 1), ("interleaved", 4, 8, 2), ("zb-h1", 4, 8, 1), ("zb-h2", 4, 8, 1),
         ("zb-v", 4, 8, 2), ("dualpipe-v", 4, 8, 2), ("1f1b", 3, 9, 1)]


@pytest.mark.parametrize("name,P,M,v", CASES)
def test_every_generator_finishes_with_one_unfinished_send_per_peer(name, P, M, v):
    lowered = lower(make(name, P, M, v))
    assert send_window(lowered) == 1
    assert finishes(lowered, 1) and finishes(lowered, None)
    assert not finishes(lowered, 0)  # control: a rank that may never send cannot finish
    assert runtime_window(make(name, P, M, v)) == 2


def _three_ranks():
    """Rank 0 sends a and b to rank 1, then c to rank 2; rank 2 turns c into d for rank 1; rank 1 needs d before it
    posts the receives of a and b. With one unfinished send allowed, rank 0 waits on a before sending b, rank 1 waits
    on d, rank 2 on c, which rank 0 sends only after b: stuck. Two allowed: it finishes."""
    a, b, c = Action(0, "F", 0), Action(0, "F", 1), Action(0, "F", 2)  # rank 0's actions (their messages' names
    ta, tb, tc, td = Action(1, "F", 0), Action(1, "F", 1), Action(2, "F", 2), Action(1, "F", 2)  # are consumers)
    rank0 = [a, Comm(SEND, a, 1, ta), b, Comm(SEND, b, 1, tb), c, Comm(SEND, c, 2, tc)]
    rank2 = [Comm(RECV, tc, 0, tc), tc, Comm(SEND, tc, 1, td)]
    rank1 = [Comm(RECV, td, 2, td), td, Comm(RECV, ta, 0, ta), ta, Comm(RECV, tb, 0, tb), tb]
    return [rank0, rank1, rank2]


def test_a_window_too_small_is_a_deadlock_and_the_smallest_that_finishes_is_found():
    lowered = _three_ranks()
    assert not finishes(lowered, 1)
    assert finishes(lowered, 2)
    assert send_window(lowered) == 2


def test_lists_that_cannot_finish_even_uncapped_are_refused():
    a = Action(0, "F", 0)
    stuck = [[Comm(RECV, a, 1, a), a], [Comm(RECV, a, 0, a), a]]  # each waits for a message nobody sends
    with pytest.raises(ValueError, match="cannot finish even with unlimited sends"):
        send_window(stuck)
