"""How long the CLI takes to answer `tokbench --help` and `tokbench list` (target: < 1 s each; neither imports
torch). `list` is measured cold (its preset table cache empty: every adapter and torch imported once) and warm.

    python benchmarks/perf/cli_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def timed(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tokbench", *argv], env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="runs per command (the median is printed)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, TOKBENCH_CACHE=cache,
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        cold = timed(["list"], env)
        rows = {"tokbench --help": [timed(["--help"], env) for _ in range(args.repeat)],
                "tokbench list (warm)": [timed(["list"], env) for _ in range(args.repeat)],
                "tokbench run --help": [timed(["run", "--help"], env) for _ in range(args.repeat)]}
    print(f"{'command':24} {'median s':>9} {'min s':>7}")
    for k, v in rows.items():
        print(f"{k:24} {statistics.median(v):9.3f} {min(v):7.3f}")
    print(f"{'tokbench list (cold)':24} {cold:9.3f}")
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
