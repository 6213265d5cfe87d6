"""Cells a lecturer should read before trusting a score: code that reaches into the grading machinery.

The grader keeps expected values out of the learner's kernel, but everything inside the kernel is the learner's: a
notebook that replaces the kernel's own machinery (``__import__`` or ``builtins`` shadowed, IPython's request
handling, the grader's ``run_cases``) can call a forbidden reference before the grader's guard is up and hand back
its answers. That cannot be stopped inside the kernel, so the grader reads the submission's source in its own
process and names the cells that touch that machinery. Points are not changed; the gradebook's ``review`` column and
the feedback list the cells. None of the course's own notebooks (``solutions/``, ``notebooks/``) is flagged.
Obfuscated code can evade a pattern, but then the obfuscation is what a reader sees.
"""
from __future__ import annotations

import re

__all__ = ["PATTERNS", "review_notes"]

PATTERNS = {
    "the import machinery (__import__, builtins)": r"\b__import__\b|\bbuiltins\b|__builtins__",
    "the grader's own code (labs.grading, run_cases, user_expressions)":
        r"labs\.grading|\brun_cases\b|user_expressions",
    "other frames or code objects (sys._getframe, f_locals, __code__, gc)":
        r"_getframe|\bf_locals\b|\bf_back\b|__code__|\bgc\.get_(?:objects|referrers)",
    "tracing hooks (setprofile, settrace)": r"\bset(?:profile|trace)\b",
    "IPython's machinery (get_ipython, transformers)": r"get_ipython|ast_transformers|input_transformers",
    "a standard module's function replaced (json.dumps = ...)":
        r"^\s*(?:json|os|sys|io|builtins|importlib|subprocess)\.\w+\s*=(?!=)",
}


def review_notes(cells) -> list:
    """``cells``: [(index, source)] of a notebook's code cells. One note per cell that touches the grading
    machinery (``"cell 3: the import machinery (__import__, builtins)"``), in cell order; [] for an honest one."""
    notes = []
    for index, source in cells:
        found = [why for why, pattern in PATTERNS.items() if re.search(pattern, source, re.M)]
        if found:
            notes.append(f"cell {index}: " + "; ".join(found))
    return notes
