"""Start-up time of the CLI: `realesr --help` and `realesr <command> --help` (target: under 0.3 s, issue 9 §5).

Runs each command in a fresh interpreter several times and prints the median and the best wall time, and
whether torch was imported on the way (it must not be, for any of them).

    .venv/bin/python bench/bench_cli_startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from realesr.cli import COMMANDS as SUBCOMMANDS

# `realesr --help` and every sub-command's --help (the list is the CLI's own, so a new command is timed too).
COMMANDS = [[], *([name] for name in SUBCOMMANDS)]
PROBE = "import sys, realesr.cli as c; c.main({argv!r}); print('TORCH' if 'torch' in sys.modules else 'NOTORCH')"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"{'command':28s} {'median s':>9s} {'best s':>7s}  torch imported")
    for command in COMMANDS:
        argv = [*command, "--help"]
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "realesr", *argv], stdout=subprocess.DEVNULL, check=False)
            times.append(time.perf_counter() - start)
        probe = subprocess.run(
            [sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, check=False
        )
        torch_seen = "yes" if "TORCH" in probe.stdout.split() else "no"
        label = "realesr " + " ".join(argv)
        print(f"{label:28s} {statistics.median(times):9.3f} {min(times):7.3f}  {torch_seen}")


if __name__ == "__main__":
    main()
