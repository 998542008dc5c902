"""`kpo-async` command line: sim | demo | bench | doctor."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kpo-async", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("sim", help="start the embedded Kubernetes cluster", add_help=False)
    commands.add_parser(
        "demo", help="run the example DAGs under Airflow on the embedded cluster", add_help=False
    )
    commands.add_parser(
        "bench", help="triggerer load benchmark: ours vs the official trigger", add_help=False
    )
    commands.add_parser(
        "doctor", help="check a cluster connection and the RBAC permissions needed", add_help=False
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "sim":
        from kpo_async.testing.sim import main as run
    elif args.command == "demo":
        from kpo_async.testing.demo import main as run
    elif args.command == "bench":
        from kpo_async.testing.bench.triggerer import main as run
    else:
        from kpo_async.doctor import main as run
    return run(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
