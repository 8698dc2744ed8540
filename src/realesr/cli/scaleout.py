"""The options of `realesr upscale` beyond one process: ``--batch``, ``--resume``, ``--ray [ADDRESS]``,
``--ray-workers``, ``--ray-gpus`` (with ``--device cuda:0,cuda:1`` / ``all`` / ``cpu,cpu``). Not a sub-command:
`cli.upscale` parses them and :func:`realesr.infer.runner.choose_runner` picks the runner (docs/scaleout.md).
"""

from __future__ import annotations

import argparse

from realesr.cli._options import number

FLAGS = {"ray": "--ray", "batch": "--batch", "workers": "--ray-workers"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("several devices and clusters (docs/scaleout.md)")
    group.add_argument(
        "--batch",
        type=number(int, low=1),
        default=1,
        metavar="N",
        help="images of one size go through the network N at a time (for GPUs; default 1)",
    )
    group.add_argument(
        "--resume",
        action="store_true",
        help="skip inputs whose outputs are already complete (written by realesr, planned size)",
    )
    group.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run on Ray: no ADDRESS starts a local Ray, 'auto' joins the running cluster, "
        "or ray://HOST:10001 / HOST:6379 (needs realesr[ray]; outputs on a shared filesystem)",
    )
    group.add_argument(
        "--ray-workers",
        type=number(int, low=1),
        default=None,
        metavar="N",
        help="Ray actors, each loading the model once (default: the cluster's GPUs, else its CPUs)",
    )
    group.add_argument(
        "--ray-gpus",
        type=number(float, low=0),
        default=None,
        metavar="G",
        help="GPUs per Ray actor (default: 1 when the cluster has GPUs, else 0)",
    )
