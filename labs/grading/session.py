"""Run a notebook's cells and the grading requests in a fresh Jupyter kernel, under time limits (the grader's side).

``run_session`` is what ``labs.grading.grader.grade_notebook`` uses: it starts a kernel (``jupyter_client``) in the
copy's folder, runs the code cells, then sends one grading request per exercise and reads the JSON file the kernel
writes. Every request has a time limit: past it the kernel is interrupted (Ctrl-C), and killed with all its processes
if it does not answer within a few seconds. A kernel that dies or is killed is restarted and the notebook re-run
without the cell that killed it or hung; an exercise whose request killed or hung the kernel scores 0 with the reason.
The whole session stops at ``timeout_s``; whatever is left then scores 0, "not graded: time limit".

Time limits per cell come from the caller (``limits.cell_limits``: a few times what the cell took in the solved
notebook, so a looping check cell costs seconds, not ``step_timeout_s``). A learner function that ran past a cell's
limit (found on the interrupted cell's traceback, or named in a cell that had to be killed) gets ``HUNG_RETRY_S``
for its grading request instead of ``step_timeout_s``: it is not waited for at full length twice.
A kernel whose replies cannot be read any more (a cell replaced ``json.dumps``, which the kernel packs its messages
with) is killed and the notebook re-run without that cell, like a hang.
"""
from __future__ import annotations

import os
import queue
import re
import secrets
import subprocess
import time

from .protocol import GradingError, read_outputs

__all__ = ["GRACE", "HUNG_RETRY_S", "Kernel", "MAX_STARTS", "run_session"]

GRACE = 5.0  # seconds a kernel gets to answer an interrupt before it is killed
MAX_STARTS = 4  # kernel starts per notebook (the first run and up to three restarts)
HUNG_RETRY_S = 15.0  # seconds for the grading request of a function that already ran past a cell's limit
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Kernel:
    """A fresh python3 kernel in ``workdir`` whose ``import labs`` finds the copy in ``root``."""

    def __init__(self, workdir: str, root: str):
        from jupyter_client import KernelManager
        env = dict(os.environ)
        # The copy of labs comes first; the grader's own course folder is not handed to the submission.
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                      if p and not os.path.isdir(os.path.join(p, "labs"))])
        env.pop("JPY_PARENT_PID", None)
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = self.manager.client()
        self.client.start_channels()
        try:
            self.client.wait_for_ready(timeout=120)
        except RuntimeError:
            self.stop()
            raise

    def request(self, code: str, limit: float, expressions: dict | None = None) -> tuple[str, dict]:
        """Execute ``code`` (or only ``expressions``): ("ok" | "error" | "late" | "hung" | "dead" | "broken", reply).

        "late": it ran past ``limit`` and stopped when interrupted; "hung": it did not stop (the caller kills it);
        "broken": the kernel's messages cannot be read any more (the caller kills it too).
        """
        msg_id = self.client.execute(code, silent=bool(expressions), store_history=not expressions,
                                     user_expressions=expressions or {}, allow_stdin=False)
        deadline, interrupted = time.monotonic() + max(limit, 0.0), None
        while True:
            try:
                try:
                    reply = self.client.get_shell_msg(timeout=0.2)
                except queue.Empty:
                    reply = None
                self._drain()
            except Exception:  # noqa: BLE001 - a message that cannot be read: the kernel's messaging is broken
                return "broken", {}
            if reply is not None and reply.get("parent_header", {}).get("msg_id") == msg_id:
                content = reply["content"]
                return ("late" if interrupted else content.get("status", "error")), content
            if not self.manager.is_alive():
                return "dead", {}
            now = time.monotonic()
            if interrupted is None and now > deadline:
                self.manager.interrupt_kernel()
                interrupted = now
            elif interrupted is not None and now > interrupted + GRACE:
                return "hung", {}

    def _drain(self) -> None:
        """Throw away the kernel's broadcast output: grading never reads what a submission prints."""
        while True:
            try:
                self.client.get_iopub_msg(timeout=0)
            except queue.Empty:
                return

    def stop(self) -> None:
        try:
            self.client.stop_channels()
        finally:
            if self.manager.has_kernel:
                self.manager.shutdown_kernel(now=True)  # SIGKILL to the kernel's process group: its ranks too
            self.manager.cleanup_resources()


def _error_text(content: dict) -> str:
    return f"{content.get('ename', 'error')}: {content.get('evalue', '')}"[:300]


def _running(content: dict, names) -> list:
    """The graded functions on an interrupted cell's traceback (``Cell In[9], line 2, in idle_fraction(P, M)``)."""
    text = _ANSI.sub("", "\n".join(content.get("traceback", []) or []))
    return [name for name in names if re.search(rf", in {re.escape(name)}\(", text)]


def _named(source: str, names) -> list:
    return [name for name in names if re.search(rf"\b{re.escape(name)}\b", source)]


def run_session(cells, drawn, expression_for, workdir: str, root: str, results: str, timeout_s: float,
                step_timeout_s: float, cell_limits: dict | None = None):
    """Run ``cells`` ([(index, source)]) then grade each (graded, cases) of ``drawn``.

    ``cell_limits``: {cell index: seconds} (a cell not in it gets ``step_timeout_s``; none gets more).
    Returns ``answers`` ({name: (outputs or None, note)}) and ``cell_errors`` ([{"cell", "error"}]).
    """
    deadline = time.monotonic() + timeout_s
    answers: dict = {}
    skip: dict = {}  # cell index -> why it is left out of re-runs
    errors: dict = {}
    hung: dict = {}  # graded function -> the cell it ran past its limit in
    names = [graded.name for graded, _ in drawn]
    cell_limits = cell_limits or {}
    starts = 0

    def left() -> float:
        return deadline - time.monotonic()

    def pending():
        return [(g, c) for g, c in drawn if g.name not in answers]

    while pending() and left() > 0 and starts < MAX_STARTS:
        starts += 1
        try:
            kernel = Kernel(workdir, root)
        except Exception as error:  # noqa: BLE001 - no kernel: nothing can be graded
            for graded, _ in pending():
                answers[graded.name] = (None, f"not graded: the kernel did not start ({error})")
            break
        restart = False
        try:
            for index, source in cells:
                if index in skip:
                    continue
                if left() <= 0:
                    break
                limit = min(step_timeout_s, cell_limits.get(index, step_timeout_s), left())
                status, content = kernel.request(source, limit)
                if status == "error":
                    errors.setdefault(index, _error_text(content))
                elif status == "late":
                    errors.setdefault(index, f"interrupted: the cell ran past its time limit of {limit:.0f} s")
                    for name in _running(content, names):
                        hung.setdefault(name, index)
                elif status in ("hung", "dead", "broken"):
                    if status == "hung":
                        for name in _named(source, names):
                            hung.setdefault(name, index)
                    skip[index] = (f"the cell did not stop within {limit:.0f} s (a hang), so the kernel was killed"
                                   if status == "hung" else
                                   "the kernel's replies became unreadable (e.g. json.dumps replaced): it was "
                                   "killed after this cell"
                                   if status == "broken" else
                                   "the kernel died while running this cell (os._exit, a kill or a crash)")
                    errors[index] = skip[index] + "; the notebook was re-run without it"
                    restart = True
                    break
            for graded, cases in ([] if restart else pending()):
                if left() <= 0:
                    break
                limit = min(step_timeout_s, left(), HUNG_RETRY_S if graded.name in hung else step_timeout_s)
                token = secrets.token_hex(16)
                path = os.path.join(results, f"{graded.name}-{token}.json")
                request = {"name": graded.name, "cases": [list(c) for c in cases], "run": graded.run,
                           "forbidden": list(graded.forbidden), "token": token, "path": path}
                status, content = kernel.request("", limit, {"grade": expression_for(request)})
                status = "dead" if status == "broken" else status
                if status in ("hung", "dead"):
                    answers[graded.name] = (None, (
                        f"0 points: computing {graded.name}'s cases did not stop within {limit:.0f} s (a hang), so "
                        f"the kernel was killed" if status == "hung" else
                        f"0 points: the kernel exited while computing {graded.name}'s cases (os._exit, sys.exit in "
                        f"a process it started, a kill or a crash)"))
                    restart = True
                    break
                note = f"stopped at the time limit of {limit:.0f} s: the cases not computed by then count as wrong" \
                    if status == "late" else ""
                if note and graded.name in hung:
                    note += f" ({graded.name} had already run past the time limit of cell {hung[graded.name]})"
                expression = content.get("user_expressions", {}).get("grade", {})
                if status == "ok" and expression.get("status") == "error":  # whatever it wrote is not trusted
                    answers[graded.name] = (None, f"0 points: the grading request failed in the kernel: "
                                                  f"{_error_text(expression)}")
                    continue
                try:
                    answers[graded.name] = (read_outputs(path, graded.name, token, len(cases)), note)
                except GradingError as error:
                    answers[graded.name] = (None, f"0 points: {error}" + (f" ({note})" if note else ""))
        finally:
            kernel.stop()
        if not restart:
            break
    for graded, _ in pending():
        answers[graded.name] = (None, f"not graded: the notebook's time limit of {timeout_s:.0f} s ran out"
                                if left() <= 0 else "not graded: the kernel kept dying")
    return answers, [{"cell": i, "error": e} for i, e in sorted(errors.items())]
