"""Exercise checks and graded tests, one module per notebook (``nb00``, ``nb01``, ...).

Each module offers ``check_<exercise>(fn)`` for the visible check in the notebook (prints specific feedback, returns
True or False, and says "not implemented yet" for an unfinished exercise) and ``GRADED``, the list of graded
exercises that ``python -m labs grade`` runs with more cases than the visible check.
"""
