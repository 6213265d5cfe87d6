"""Exercise checks and graded scores, one module per notebook (``nb00``, ``nb01``, ...).

Each module offers ``check_<exercise>(fn)`` for the visible check in the notebook (prints specific feedback, returns
True or False, says "not implemented yet" for an unfinished exercise and "just calls ..." when the function calls the
reference it is asked to write) and ``GRADED``, the list of ``labs.grading.Graded`` exercises: cases drawn by the
grader, scored in the grader's process from the plain outputs the learner's kernel sends back (``_common.py`` has
the shared helpers).
"""

__all__ = []
