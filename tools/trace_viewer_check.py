"""Open an exported trace in Catapult's trace viewer (the one behind chrome://tracing) and report what it shows.

    python tools/trace_viewer_check.py step.json [--ranks P]

prints the processes in the viewer's display order with their tracks (threads) and slice counts, the flows, the
viewer's import warnings and page errors, then one verdict per claim (True/False), and exits 1 if one is False
(2 when the tools are missing). The claims: one process per rank, in rank order; each rank's tracks are compute,
sends (and its lanes), receives (and all-reduces when the run had them), in that order; each compute track holds
that rank's actions and nothing else; one flow per message; no import warning or page error.

How: Catapult's ``tracing/bin/trace2html`` writes the viewer page with the trace inside; a script added to the page
imports the trace with the viewer's own importer (``tr.importer.Import``) into the model it draws and writes what
the model holds into the page; headless Chromium (``--dump-dom``) runs it. Needs, each found through an
environment variable or the default place:

* ``CATAPULT``: a checkout of github.com/catapult-project/catapult (only ``tracing/``, ``common/`` and
  ``third_party/`` are read), default ``/opt/catapult``;
* ``CHROMIUM``: a Chromium or Chrome binary, default the first of chromium, chromium-browser, google-chrome on PATH
  (Debian: ``apt-get install chromium``).

Perfetto's own trace processor is not used here: its binary is downloaded on first use from Google's servers.
``labs.viz.perfetto.validate`` checks the id rules Perfetto's importer relies on without any tool.
"""
from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

_REPORT = r"""<script>
window.__labsErrors = [];
window.addEventListener('error', e => window.__labsErrors.push(String(e.message)));
document.addEventListener('DOMContentLoaded', function() {
  const report = {pageErrors: window.__labsErrors};
  try {
    const traces = [];
    const scripts = Polymer.dom(document).querySelectorAll('#viewer-data');   // as trace2html's own page reads it
    for (let i = 0; i < scripts.length; i++)
      traces.push(tr.b.Base64.atob(Polymer.dom(scripts[i]).textContent.replace(/^\n+/, '')));
    const model = new tr.Model();
    new tr.importer.Import(model).importTraces(traces);   // the viewer's importer, run to the end
    report.importWarnings = model.importWarnings.map(w => w.message);
    report.flows = model.flowEvents.length;
    report.processes = model.getAllProcesses().slice().sort(tr.model.Process.compare).map(p => ({
      pid: p.pid, label: p.userFriendlyName, name: p.name, sortIndex: p.sortIndex,
      threads: Object.values(p.threads).sort(tr.model.Thread.compare).map(t => ({
        tid: t.tid, label: t.userFriendlyName, name: t.name, sortIndex: t.sortIndex,
        slices: t.sliceGroup.length, first: t.sliceGroup.slices.slice(0, 3).map(s => s.title)}))}));
  } catch (err) {
    report.pageErrors.push(String(err && err.stack || err));
  }
  const pre = document.createElement('pre');
  pre.id = 'labs-viewer-report';
  pre.textContent = JSON.stringify(report);
  document.body.appendChild(pre);
});
</script>
"""


def tools() -> tuple[str, str] | None:
    """(trace2html, chromium) when both are here, else None."""
    trace2html = os.path.join(os.environ.get("CATAPULT", "/opt/catapult"), "tracing", "bin", "trace2html")
    chromium = os.environ.get("CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if os.path.isfile(trace2html) and chromium and os.path.exists(chromium):
        return trace2html, chromium
    return None


def viewer_model(path: str, timeout_s: float = 120.0) -> dict:
    """What Catapult's viewer builds from the trace at ``path``. RuntimeError if the tools are missing or fail."""
    found = tools()
    if found is None:
        raise RuntimeError("needs CATAPULT (a catapult checkout) and Chromium (CHROMIUM or chromium on PATH)")
    trace2html, chromium = found
    with tempfile.TemporaryDirectory() as folder:
        page = os.path.join(folder, "trace.html")
        subprocess.run([sys.executable, trace2html, path, "--output", page], check=True, capture_output=True,
                       timeout=timeout_s)
        with open(page, encoding="utf-8") as handle:
            text = handle.read()
        at = text.rfind("</body>")
        with open(page, "w", encoding="utf-8") as handle:
            handle.write(text[:at] + _REPORT + text[at:] if at >= 0 else text + _REPORT)
        browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={folder}/profile"]
        done = subprocess.run(browser + ["--virtual-time-budget=20000", "--dump-dom", f"file://{page}"],
                              capture_output=True, text=True, timeout=timeout_s)
    match = re.search(r'<pre id="labs-viewer-report">(.*?)</pre>', done.stdout, re.S)
    if not match:
        raise RuntimeError(f"the viewer page wrote no report (exit {done.returncode}): {done.stderr[-600:]}")
    return json.loads(html.unescape(match.group(1)))


def verdicts(data: dict, model: dict, ranks: int) -> list[tuple[str, bool]]:
    """The claims about what the viewer shows, each with its verdict."""
    actions: dict = {}
    for e in data["traceEvents"]:
        if e.get("ph") == "X" and e.get("cat") in ("forward", "backward", "weight"):
            rank = e.get("args", {}).get("rank", e["pid"])
            actions[rank] = actions.get(rank, 0) + 1
    messages = sum(e.get("ph") == "s" for e in data["traceEvents"])
    procs = model.get("processes", [])
    names = [p["name"] for p in procs]

    def tracks(p):
        return [re.sub(r" \(\d+\)$", "", t["name"] or "") for t in p["threads"]]

    def ordered(p):
        kinds = [k for i, k in enumerate(tracks(p)) if i == 0 or tracks(p)[i - 1] != k]
        return kinds in (["compute", "sends", "receives"], ["compute", "sends", "receives", "all-reduces"])

    return [(f"one process per rank, in rank order: {names}", names == [f"rank {r}" for r in range(ranks)]),
            ("each rank's tracks are compute, sends, receives (all-reduces), in that order",
             bool(procs) and all(ordered(p) for p in procs)),
            ("each rank's compute track holds its actions and nothing else",
             bool(procs) and all(p["threads"][0]["name"] == "compute" and p["threads"][0]["slices"] ==
                                 actions.get(r, -1) for r, p in enumerate(procs))),
            (f"one flow per message ({messages})", model.get("flows") == messages),
            ("the viewer imported it without warnings or errors",
             not model.get("importWarnings") and not model.get("pageErrors"))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace")
    parser.add_argument("--ranks", type=int, help="the run's ranks (default: the processes the file names)")
    args = parser.parse_args(argv)
    with open(args.trace) as handle:
        data = json.load(handle)
    try:
        model = viewer_model(args.trace)
    except RuntimeError as error:
        print(f"viewer: {error}", file=sys.stderr)
        return 2
    print("the viewer's processes, in display order:")
    for p in model.get("processes", []):
        print(f"  pid {p['pid']:>3} {p['label']!r:18} sort {p['sortIndex']}: " + "; ".join(
            f"tid {t['tid']} {t['label']!r} {t['slices']} slices" for t in p["threads"]))
    print(f"{model.get('flows')} flows, {len(model.get('importWarnings', []))} import warnings "
          f"{model.get('importWarnings', [])[:3]}, {len(model['pageErrors'])} page errors {model['pageErrors'][:3]}")
    ranks = args.ranks or sum(1 for e in data["traceEvents"] if e.get("name") == "process_name")
    results = verdicts(data, model, ranks)
    for claim, ok in results:
        print(f"{claim}: {ok}")
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
