"""Seconds from a stop signal to the end of `emostream replay --speed 1` (and to its summary line).

    python benchmarks/stop_latency.py 2.5 4.2 7.9 9.5 12   # signal that many seconds into the session

Each run replays examples/dialogue.wav in real time, sends SIGINT (``--signal TERM`` for
SIGTERM) the given seconds after the `session` line, and prints when the `summary` line
arrived and when the process ended, with the load average.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import EXAMPLES, start_emostream  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("delays", nargs="+", type=float, help="seconds into the session to send the signal")
    parser.add_argument("--signal", default="INT", choices=["INT", "TERM"])
    args = parser.parse_args()
    signum = getattr(signal, f"SIG{args.signal}")
    for delay in args.delays:
        proc = start_emostream("replay", EXAMPLES / "dialogue.wav", "--speed", "1", "--json", "--no-display")
        for line in proc.stdout:
            if '"type": "session"' in line:
                break
        time.sleep(delay)
        sent = time.perf_counter()
        proc.send_signal(signum)
        summary_at = None
        for line in proc.stdout:
            if '"type": "summary"' in line:
                summary_at = time.perf_counter() - sent
        proc.wait(timeout=120)
        summary = f"{summary_at:.2f} s" if summary_at is not None else "never"
        print(f"SIG{args.signal} at {delay:.1f} s: summary after {summary}, exit {proc.returncode} after "
              f"{time.perf_counter() - sent:.2f} s (load average {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
