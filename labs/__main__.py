"""Command line: ``python -m labs run|bench|grade ...`` (``python -m labs run --help`` for the options).

    python -m labs run --schedule 1f1b -P 4 -M 8 --pace-ms 10,20
    python -m labs run --schedule interleaved -P 4 -M 8 -v 2 --json
    python -m labs run --schedule 1f1b -P 2 -T 2 -D 2 -M 4 --json     # 8 ranks, a 3-D grid
    python -m labs bench
    python -m labs grade notebooks/03_gpipe.ipynb --json scores.json
    python -m labs grade submissions/ --gradebook grades.csv          # a class: a gradebook and feedback files

P pipeline ranks (``-P/--pp``), M micro-batches (``-M/--microbatches``), v model chunks per rank
(``-v/--virtual-stages``), T tensor-parallel ranks (``-T/--tp``), D data-parallel replicas (``-D/--dp``): the same
letters as the Python API and the JSON summary.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .schedules import SCHEDULES  # no torch: the CLI starts fast
from .checks import DEFAULT_PACE_MS

__all__ = ["main"]


def _whole(text: str) -> int:
    """A whole number written in ASCII digits (int() would also read other scripts' digits, e.g. '٢' as 2)."""
    if not (text.isascii() and text.lstrip("-").isdigit()):
        raise argparse.ArgumentTypeError(f"expected a whole number written with the digits 0-9, got {text!r}")
    return int(text)


def _pace(text: str):
    if text.lower() in ("none", "off", "0"):
        return None
    try:
        if not text.isascii():
            raise ValueError(text)
        times = tuple(float(x) for x in text.split(","))
        if len(times) not in (2, 3):
            raise ValueError(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--pace-ms takes FORWARD,BACKWARD (or FORWARD,I,W: input and weight gradient) "
                                         f"in ms per layer (e.g. 10,20 or 10,10,10), or 'off'; got {text!r}")
    return times


def _run_parser(sub) -> None:
    p = sub.add_parser("run", help="run one real pipeline-parallel training step and explain it")
    p.add_argument("--schedule", default="1f1b", choices=SCHEDULES, help=", ".join(SCHEDULES))
    p.add_argument("-P", "--pp", dest="P", type=_whole, default=4, help="pipeline ranks P")
    p.add_argument("-M", "--microbatches", dest="M", type=_whole, default=8, help="micro-batches M")
    p.add_argument("-v", "--virtual-stages", dest="v", type=_whole, default=1,
                   help="model chunks per rank v (interleaved)")
    p.add_argument("-T", "--tp", dest="T", type=_whole, default=1,
                   help="tensor-parallel ranks T per stage (MLP blocks split T ways)")
    p.add_argument("-D", "--dp", dest="D", type=_whole, default=1, help="data-parallel replicas D (P*T*D ranks in all)")
    p.add_argument("--layers", type=_whole, default=8)
    p.add_argument("--width", type=_whole, default=64)
    p.add_argument("--batch-size", type=_whole, default=64)
    p.add_argument("--pace-ms", type=_pace, default=DEFAULT_PACE_MS,
                   help="pad each layer's forward,backward to these ms (default %s; 'off' for real compute)"
                        % ",".join(f"{t:g}" for t in DEFAULT_PACE_MS))
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before a hung run is stopped")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    p.add_argument("--plot", metavar="FILE.png", help="save the measured and simulated timelines")
    p.add_argument("--link", metavar="MS[,MB/S]", help="every message costs this latency (and bandwidth), e.g. 1,100")
    p.add_argument("--slow-link", metavar="A-B:MS[,MB/S]", action="append", default=[],
                   help="the link between ranks A and B costs this instead (repeatable), e.g. 1-2:30,5")
    p.add_argument("--slow-stage", metavar="S:FACTOR", action="append", default=[],
                   help="stage S's compute takes FACTOR times the pace (repeatable), e.g. 2:3")
    p.add_argument("--straggler", metavar="R:FACTOR", help="every action of rank R takes FACTOR times longer")
    p.add_argument("--blocking", action="store_true", help="blocking send/recv in action order (may deadlock)")
    p.add_argument("--memory", choices=("fast", "paced", "off"), default="fast",
                   help="the untimed step that measures each rank's peak memory (live tensor bytes): at compute "
                        "speed (fast, the default), at the run's pace, or not at all")
    p.add_argument("--chrome-trace", metavar="FILE.json",
                   help="save the measured trace for Perfetto / chrome://tracing")


def _run(args) -> int:
    from .pipeline import CLASSIC, run_pipeline
    from .runtime.pacing import parse_factor
    from .timeline.costs import network_from_text
    from .viz.text import render

    try:
        network = network_from_text(args.link, args.slow_link)
        slow_stages = dict(parse_factor(text, "--slow-stage") for text in args.slow_stage)
        straggler = parse_factor(args.straggler, "--straggler") if args.straggler else None
    except ValueError as error:
        raise SystemExit(f"error: {error}")
    run = run_pipeline(args.schedule, args.P, args.M, args.v, args.layers, args.width, args.batch_size, args.pace_ms,
                       timeout_s=args.timeout, network=network, blocking=args.blocking, slow_stages=slow_stages,
                       straggler=straggler, T=args.T, D=args.D, memory={"fast": True, "paced": "paced", "off": False}[args.memory])
    summary = run.summary()
    from .runtime.devices import under_torchrun
    if under_torchrun() and os.environ["RANK"] != "0":  # every torchrun rank gets the results; rank 0 reports them
        return 0
    if args.chrome_trace:
        from .viz.perfetto import save
        save(run.trace, args.chrome_trace, name=f"{run.name} P={run.P} M={run.M}")
    if args.plot:
        from .viz import plots
        plots.compare(run.trace, run.simulated).savefig(args.plot, dpi=120)
    if args.json:
        print(json.dumps(summary))
        return 0
    slot = min(e.duration_s for events in run.trace.events for e in events)
    slots = [[(round(e.start_s / slot), round(e.end_s / slot), e.action) for e in events]
             for events in run.trace.events]
    print(f"{run.name}: P={run.P} ranks, M={run.M} micro-batches, v={run.v}")
    print(f"\nmeasured timeline (one column = {slot * 1000:.1f} ms):\n{render(run.schedule, slots)}\n")
    links = "same links and stages" if network or slow_stages or straggler else "same costs"
    print(f"step time        {run.step_time_s * 1000:8.1f} ms   simulated {run.simulated_step_time_s * 1000:.1f} ms, "
          f"{links} (measured x{run.step_time_s / run.simulated_step_time_s:.3f})")
    print(f"ideal            {run.ideal_time_s * 1000:8.1f} ms   the busiest rank's compute alone")
    formula = "(P-1)/(vM+P-1)" if run.name in CLASSIC else "(simulated, free link)"
    print(f"idle fraction    {run.idle_fraction:8.3f}      theory {formula} = {run.idle_fraction_theory:.3f}")
    peaks = run.trace.peak_activations
    print(f"peak activations {peaks} micro-batches per rank" if run.v == 1 else
          f"peak activations {peaks} chunk activations per rank (one micro-batch through one of the rank's v={run.v} "
          f"chunks, 1/{run.v} of its layers): {[p / run.v for p in peaks]} micro-batches' worth")
    print(f"bytes moved      {run.trace.bytes_moved} in {run.trace.messages} messages between stages")
    if run.trace.memory[0] is not None:
        print(_memory_lines(run.trace.memory))
    if run.grid:
        traffic = run.trace.traffic
        print(f"all-reduced      {traffic['bytes_inside_stages']} bytes inside stages (tensor parallel), "
              f"{traffic['bytes_across_replicas']} across replicas (data parallel)\n{run.grid.layout()}")
    verdict = "OK" if run.max_grad_error <= 1e-5 else "MISMATCH"
    print(f"gradient check   max |pipeline - one process| = {run.max_grad_error:.2e}  {verdict}")
    return 0 if verdict == "OK" else 1


def _memory_lines(memory: list) -> str:
    """The measured memory per rank: the peak, and what held it at that moment."""
    at = [m["at_peak_bytes"] for m in memory]
    parts = {"weights+gradients": [a["parameters"] + a["gradients"] for a in at],
             "activations": [a["activations"] for a in at], "communication": [a["communication"] for a in at],
             "data+temporaries": [a["data"] + a["other"] for a in at]}
    return (f"peak memory      {[m['peak_bytes'] for m in memory]} bytes per rank (live tensors, one untimed step)\n"
            + "\n".join(f"  at the peak: {name:18} {values}" for name, values in parts.items()))


def _check_paths(args) -> str | None:
    """What is wrong with the files a command would read or write, found before anything runs."""
    if args.command == "grade":
        from .grading.cli import check
        return check(args)
    for path in filter(None, [getattr(args, "plot", None), getattr(args, "chrome_trace", None)]):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            return f"cannot write {path}: the folder {folder} does not exist (create it or choose another path)"
    return None


def main(argv=None) -> int:
    """Parse ``argv`` and run the command; the exit code: 0 done, 1 a run failed, 2 bad input (said on stderr)."""
    parser = argparse.ArgumentParser(prog="python -m labs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    bench = sub.add_parser("bench",
                           help="launch time, step/simulated per schedule, ours vs torch.distributed.pipelining")
    bench.add_argument("--pace-ms", type=_pace, default=DEFAULT_PACE_MS)
    bench.add_argument("-M", "--microbatches", dest="M", type=_whole, default=8, help="micro-batches M")
    bench.add_argument("--json", action="store_true")
    from .grading.cli import add_parser
    add_parser(sub)
    args = parser.parse_args(argv)
    problem = _check_paths(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from .errors import InputError, RunFailure
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "grade":
            from .grading.cli import main as grade_main
            try:
                return grade_main(args)
            except (ValueError, ModuleNotFoundError) as error:  # a missing file, not a notebook, unknown number
                print(f"error: {error}", file=sys.stderr)
                return 2
        from .course.bench import main as bench_main
        return bench_main(args)
    except (InputError, ValueError) as error:  # bad input (ScheduleError, ModelError, GridError...): what to change
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RunFailure as error:  # RankFailed, LaunchTimeout
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
