"""`kpo-async` command line: sim | demo | bench | doctor."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = (
    "kpo-async runs a container image as a Kubernetes pod from Airflow 3 without holding a worker "
    "slot while the pod runs. These commands help you try it and check a deployment."
)
EPILOG = (
    "Run 'kpo-async COMMAND --help' for a command's options. Guides: \"Getting started\" and "
    '"Command line" in the kpo-async documentation.'
)
COMMANDS = {
    "doctor": "check that this host reaches the cluster, the namespace exists and the "
    "permissions the operator needs are granted",
    "sim": "start the embedded Kubernetes cluster on 127.0.0.1, to try DAGs without a cluster",
    "demo": "run the example DAGs under Airflow against the embedded cluster (--ui: in the Airflow UI)",
    "bench": "measure a triggerer's load with many deferred pods: kpo-async's trigger vs the official one",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kpo-async", description=DESCRIPTION, epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
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
