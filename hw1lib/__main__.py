"""Command line: python -m hw1lib {data,run,report} … (see --help of each)."""
from __future__ import annotations

import argparse
import signal
import sys

from . import Hw1Error, absolute_path_variables, interrupted_line, interrupted_while_starting


def main(argv: list[str] | None = None) -> int:
    try:  # an interrupt is one line at any moment, even while torch is still being imported
        if signal.getsignal(signal.SIGINT) is interrupted_while_starting:  # set while starting (__init__)
            signal.signal(signal.SIGINT, signal.default_int_handler)  # from here: KeyboardInterrupt
        absolute_path_variables()
        return _main(argv)
    except KeyboardInterrupt:
        print(interrupted_line(), file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hw1lib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="fetch or verify real MNIST")
    data.add_argument("action", choices=["fetch", "verify"])

    def common(p):
        p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
        p.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
        p.add_argument("--force", action="store_true", help="retrain even if a stored run exists")
        p.add_argument("--backend", default=None, choices=["local", "ray"],
                       help="local: train in this process (default); ray: each group of runs a "
                            "Ray task (pip install -r requirements-ray.txt)")
        p.add_argument("--address", default=None,
                       help="with --backend ray: a running cluster's address (e.g. auto or "
                            "HOST:6379; default: start a local Ray instance)")

    from .experiments import REGISTRY

    by_section = sorted(REGISTRY.values(), key=lambda e: tuple(map(int, e.section.split("."))))
    run = commands.add_parser(
        "run", help="run one experiment and write its summary.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="experiments:\n" + "\n".join(f"  {e.id:<20} section {e.section}" for e in by_section))
    run.add_argument("experiment", help="the experiment's id (listed below)")
    run.add_argument("--profile", default=None,
                     help="smoke | quick | full (default: full with a GPU, quick without)")
    common(run)

    report = commands.add_parser("report", help="execute the notebooks, render HTML and PDF")
    report.add_argument("--profile", default=None,
                        help="smoke | quick | full (default: full with a GPU, quick without)")
    report.add_argument("--sections", nargs="*", default=None, help="e.g. 1.1 1.2 (default: all)")
    report.add_argument("--no-pdf", action="store_true", help="render the HTML only")
    report.add_argument("--jobs", type=int, default=None,
                        help="experiments trained, then notebooks executed, at a time (default: 3 "
                             "with a GPU, 1 without)")
    common(report)

    args = parser.parse_args(argv)
    try:
        if args.command != "data":  # before anything starts (a Ray instance, a kernel) or is replaced
            from .experiments.core import check_seed
            check_seed(args.seed, seeds=1)  # the bound for more seeds, once the experiment's are known
        if args.command == "data":
            from .data import MNIST_SHA256, check_data_folder, data_dir, fetch_mnist, verify_file

            if args.action == "fetch":
                fetch_mnist()
            else:
                check_data_folder(data_dir())
                for name in MNIST_SHA256:
                    verify_file(data_dir() / name)
                print(f"MNIST: all four files verified in {data_dir()}")
        elif args.command == "run":
            from .experiments import get, run_experiment
            from .experiments.core import default_profile
            from .profiles import check_profile

            get(args.experiment)  # unknown experiment: one line, before anything runs
            if args.address and args.backend != "ray":
                raise Hw1Error("--address applies to --backend ray")
            profile = check_profile(args.profile or default_profile(args.device, args.backend,
                                                                    args.address))
            result = run_experiment(args.experiment, profile, args.device, args.seed, args.force,
                                    args.backend, args.address)
            timing = result.summary["timing"]
            print(f"{args.experiment}: {timing['trained_now']} run(s) trained, "
                  f"{timing['runs'] - timing['trained_now']} reused from the store"
                  + (f"; wrote {result.summary_path}" if result.summary_path else ""))
        else:
            from .report import build_report

            if args.address and args.backend != "ray":
                raise Hw1Error("--address applies to --backend ray")
            build_report(args.profile, args.device, args.seed, args.sections, args.force,
                         pdf=not args.no_pdf, backend=args.backend, address=args.address,
                         jobs=args.jobs)
    except Hw1Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
