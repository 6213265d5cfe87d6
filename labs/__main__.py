"""Command line: ``python -m labs run|bench|grade ...`` (``python -m labs run --help`` for the options).

    python -m labs run --schedule 1f1b --stages 4 --microbatches 8 --pace-ms 10,20
    python -m labs run --schedule interleaved --stages 4 --microbatches 8 --virtual-stages 2 --json
    python -m labs bench
    python -m labs grade notebooks/03_gpipe.ipynb --json scores.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def _pace(text: str):
    if text.lower() in ("none", "off", "0"):
        return None
    try:
        forward, backward = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--pace-ms takes FORWARD,BACKWARD in ms per layer (e.g. 10,20), "
                                         f"or 'off'; got {text!r}")
    return forward, backward


def _run_parser(sub) -> None:
    p = sub.add_parser("run", help="run one real pipeline-parallel training step and explain it")
    p.add_argument("--schedule", default="1f1b", help="naive, gpipe, 1f1b or interleaved")
    p.add_argument("--stages", type=int, default=4, help="pipeline ranks P")
    p.add_argument("--microbatches", type=int, default=8, help="micro-batches M")
    p.add_argument("--virtual-stages", type=int, default=1, help="model chunks per rank v (interleaved)")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--pace-ms", type=_pace, default=(10.0, 20.0),
                   help="pad each layer's forward,backward to these ms (default 10,20; 'off' for real compute)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before a hung run is stopped")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    p.add_argument("--plot", metavar="FILE.png", help="save the measured and simulated timelines")


def _run(args) -> int:
    from . import plots
    from .pipeline import run_pipeline
    from .schedules import render

    run = run_pipeline(args.schedule, args.stages, args.microbatches, args.virtual_stages, args.layers,
                       args.width, args.batch_size, args.pace_ms, timeout=args.timeout)
    summary = run.summary()
    if os.environ.get("RANK", "0") != "0":  # under torchrun every rank gets the results; rank 0 reports them
        return 0
    if args.plot:
        plots.compare(run.trace, run.ideal).savefig(args.plot, dpi=120)
    if args.json:
        print(json.dumps(summary))
        return 0
    slot = min(e.duration for events in run.trace.events for e in events)
    slots = [[(round(e.start / slot), round(e.end / slot), e.action) for e in events] for events in run.trace.events]
    print(f"{run.name}: P={run.stages} ranks, M={run.microbatches} micro-batches, v={run.virtual_stages}")
    print(f"\nmeasured timeline (one column = {slot * 1000:.1f} ms):\n{render(run.schedule, slots)}\n")
    print(f"step time        {run.step_time * 1000:8.1f} ms   ideal {run.ideal_time * 1000:.1f} ms "
          f"(x{run.step_time / run.ideal_time:.3f})")
    print(f"idle fraction    {run.bubble_fraction:8.3f}      theory (P-1)/(vM+P-1) = {run.bubble_fraction_theory:.3f}")
    print(f"peak activations {run.trace.peak_activations} micro-batches per rank")
    print(f"bytes moved      {run.trace.bytes_moved} in {run.trace.messages} messages")
    verdict = "OK" if run.max_grad_error <= 1e-5 else "MISMATCH"
    print(f"gradient check   max |pipeline - one process| = {run.max_grad_error:.2e}  {verdict}")
    return 0 if verdict == "OK" else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    bench = sub.add_parser("bench", help="launch time, step/ideal per schedule, ours vs torch.distributed.pipelining")
    bench.add_argument("--pace-ms", type=_pace, default=(10.0, 20.0))
    bench.add_argument("--microbatches", type=int, default=8)
    bench.add_argument("--json", action="store_true")
    grade = sub.add_parser("grade", help="execute a copy of a submitted notebook, score its exercises, print a table")
    grade.add_argument("notebook", help="path to the submitted .ipynb")
    grade.add_argument("--json", metavar="FILE", help="also write the scores as JSON to FILE")
    grade.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole notebook (default 600)")
    grade.add_argument("--step-timeout", type=float, default=180.0, help="seconds for one cell or one exercise")
    grade.add_argument("--seed", type=int, help="draw the graded cases with this seed (default: a fresh one)")
    args = parser.parse_args(argv)
    from .launch import LaunchTimeout, RankFailed
    from .model import ModelError
    from .schedules import ScheduleError
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "grade":
            from .grading import main as grade_main
            try:
                return grade_main(args)
            except (ValueError, ModuleNotFoundError) as error:  # a missing file, not a notebook, unknown number
                print(f"error: {error}", file=sys.stderr)
                return 2
        from .bench import main as bench_main
        return bench_main(args)
    except (ScheduleError, ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (RankFailed, LaunchTimeout) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
