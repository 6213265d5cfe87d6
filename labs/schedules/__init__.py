from .validation import *  # noqa: F401,F403 (step 1 of the move: the old module's names)
from .validation import (BACKWARD, FORWARD, KINDS, SCHEDULES, WEIGHT, Action, Schedule, ScheduleError, _check_counts,
                         dependencies, gpipe, interleaved, make, naive, one_f_one_b, parse, parse_action, render, shape,
                         stage_owners, uses_weight_step, validate)
