"""cProfile one or more of ``bench.py``'s cases: where a missed target's time goes.

    python benchmarks/profile_case.py "RS256, cache miss"          # top 20 by own time
    python benchmarks/profile_case.py "cache hit" --calls 200000 --top 15

Each case whose name contains the text is warmed up, then called ``--calls`` times under
cProfile; the per-call cost without the profiler is printed first, since cProfile inflates
Python-heavy code more than C calls.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import build_cases
from shared import MEASURED, start_response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("case", help="text in the case name (see bench.py's table)")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    cases, idp = build_cases(time.time())
    chosen = [case for case in cases if args.case in case[0]]
    if not chosen:
        sys.exit(f"no case name contains {args.case!r}: " + ", ".join(n for n, _, _ in cases))
    print(MEASURED)
    for name, app, env in chosen:
        started = time.perf_counter()
        for _ in range(args.calls):
            app(env, start_response)
        plain = (time.perf_counter() - started) / args.calls * 1e6
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.calls):
            app(env, start_response)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(args.top)
        print(f"\n== {name}: {plain:.2f} us/call without the profiler, {args.calls} calls")
        print(out.getvalue().split("\n", 4)[-1].rstrip())
    idp.stop()


if __name__ == "__main__":
    main()
