"""What a grading kernel sends back for a function, computed in the test process (no kernel started).

    outputs(graded, fn, cases)   # graded: an entry of a notebook's GRADED; fn: the answer under test

The exercise's run adapter (``graded.run``, "module:function") is called on each case when it has one, and a case
that raises becomes ``{"error": "Type: message"}`` as the kernel reports it; otherwise ``fn(*case)`` as plain data
(with ``through_json``, passed through JSON as the kernel's reply is, so tuples arrive as lists).
"""
from __future__ import annotations

import json

from labs.grading import plain

NOT_IMPLEMENTED = {"not_implemented": True}


def outputs(graded, fn, cases, through_json: bool = True) -> list:
    if graded.run:
        module, name = graded.run.split(":")
        run = getattr(__import__(module, fromlist=[name]), name)
        results = []
        for case in cases:
            try:
                results.append(plain(run(fn, *case)))
            except Exception as error:  # noqa: BLE001 - what the kernel sends for a raising answer
                results.append({"error": f"{type(error).__name__}: {error}"})
        return results
    if through_json:
        return [json.loads(json.dumps(plain(fn(*case)))) for case in cases]
    return [plain(fn(*case)) for case in cases]


def run_in_kernel_side(fn, cases, forbidden=(), run=None) -> list:
    """What the grader gets back from the kernel side itself (labs.grading.kernel.run_cases) on the cases sent as
    JSON, forbidden names and run adapter included; no kernel is started."""
    import os
    import tempfile

    from labs.grading.kernel import run_cases
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "outputs.json")
        run_cases({"learner": fn}, json.dumps({"name": "learner", "cases": cases, "run": run,
                                               "forbidden": list(forbidden), "token": "t", "path": path}))
        with open(path) as handle:
            return json.load(handle)["outputs"]
