"""Throughput under gunicorn + wrk, and what a new token costs across a fleet of workers.

1. gunicorn gthread (1 worker, 4 threads) on 127.0.0.1 serving the bare app and the middleware
   (``wrk_app.py``); ``wrk`` sends the same validated RS256 token on every request, so every
   request of the middleware is a cache hit. Runs alternate bare, hit, hit, bare (``--rounds``
   times) so drift hits both alike; the ratio of mean req/s is issue 15's target (>= 90%).
2. Fleet: ``--workers`` separate gunicorn processes, each one sync worker (as N workers of one
   gunicorn, but each addressable: a shared listening socket gives no say over which worker
   takes a connection). Each new token goes to every worker in turn, then again: the first
   request of each is a miss (that worker verifies the token itself), the second a hit. A new
   token thus costs the fleet N verifications; the printed sum is that cost.

    python benchmarks/wrk.py                 # ~10 s per wrk run, 4 runs, then the fleet
    python benchmarks/wrk.py --duration 3    # quicker
    python benchmarks/wrk.py --json          # last line: the figures as JSON (bench.py --wrk)

Needs ``wrk`` (Debian: ``apt-get install -y wrk``) and gunicorn (the dev extra). Every server
is started here and stopped by its PID; nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from shared import MEASURED, Idp, child_env, keycloak_claims

HERE = Path(__file__).resolve().parent
GOAL = 0.90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Gunicorn:
    """One gunicorn master on 127.0.0.1, stopped by its PID."""

    def __init__(self, target: str, jwks_uri: str, *worker: str) -> None:
        self.port = free_port()
        env = child_env() | {"BENCH_JWKS_URI": jwks_uri}
        command = [sys.executable, "-m", "gunicorn", *worker, "--log-level", "warning"]
        command += ["-b", f"127.0.0.1:{self.port}", "--chdir", str(HERE), target]
        self.process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"gunicorn {target} did not start") from None
                time.sleep(0.05)

    def get(self, authorization: str) -> tuple[int, float, float]:
        """(status, seconds, the app's own seconds from ``X-Bench-Us`` or NaN) of one GET / on
        a new connection, as a browser's first request."""
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", "/", headers={"Authorization": authorization})
            answer = connection.getresponse()
            answer.read()
        finally:
            connection.close()
        inside = float(answer.getheader("X-Bench-Us", "nan")) / 1e6
        return answer.status, time.perf_counter() - started, inside

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, 15)  # SIGTERM to the master, which stops its workers
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, 9)
                self.process.wait()


def wrk(port: int, authorization: str, duration: int, connections: int) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-H"]
    command += [f"Authorization: {authorization}", f"http://127.0.0.1:{port}/"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:(.*)", output)
    if rps is None:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{output}")
    return {
        "rps": float(rps.group(1)),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


def throughput(idp: Idp, bearer: str, args: argparse.Namespace) -> dict[str, Any]:
    gthread = ("-k", "gthread", "-w", "1", "--threads", "4")
    servers = {
        name: Gunicorn(f"wrk_app:{name}", f"{idp.base}/jwks", *gthread) for name in ("bare", "app")
    }
    try:
        status = servers["app"].get(bearer)[0]
        refused = servers["app"].get(bearer[:-8] + "AAAAAAAA")[0]
        if status != 200 or refused != 401:
            raise RuntimeError(f"middleware answered {status} to the token, {refused} to a forgery")
        runs: dict[str, list[float]] = {"bare": [], "app": []}
        non_2xx = 0
        for _ in range(args.rounds):
            for name in ("bare", "app", "app", "bare"):
                measured = wrk(servers[name].port, bearer, args.duration, args.connections)
                runs[name].append(measured["rps"])
                non_2xx += measured["non_2xx"]
                if not args.json:
                    errors = measured["socket_errors"]
                    print(f"  wrk {name:<5} {measured['rps']:10.1f} req/s  {errors}")
    finally:
        for server in servers.values():
            server.stop()
    bare, hit = statistics.mean(runs["bare"]), statistics.mean(runs["app"])
    return {"bare_rps": bare, "hit_rps": hit, "ratio": hit / bare, "non_2xx": non_2xx, "runs": runs}


def fleet(idp: Idp, key: Any, now: float, args: argparse.Namespace) -> dict[str, Any]:
    def bearer(n: int) -> str:
        claims = keycloak_claims(now, n)
        return "Bearer " + jwt.encode(claims, key, algorithm="RS256", headers={"kid": "rsa"})

    tokens = [bearer(1000 + n) for n in range(args.fleet_tokens)]
    workers = [
        Gunicorn("wrk_app:timed", f"{idp.base}/jwks", "-k", "sync", "-w", "1")
        for _ in range(args.workers)
    ]
    first: list[list[float]] = [[] for _ in workers]
    again: list[list[float]] = [[] for _ in workers]
    first_inside: list[list[float]] = [[] for _ in workers]
    again_inside: list[list[float]] = [[] for _ in workers]
    try:
        warm = bearer(999)
        for worker in workers:  # key set fetched, code warm, in every worker
            for _ in range(5):
                worker.get(warm)
        for token in tokens:
            for index, worker in enumerate(workers):
                # A hit first, untimed: the worker is awake and its caches warm, so the new
                # token's first request differs from the hit after it only by the miss.
                worker.get(warm)
                for seen, inside in ((first, first_inside), (again, again_inside)):
                    status, seconds, app_seconds = worker.get(token)
                    if status != 200:
                        raise RuntimeError(f"worker {index} answered {status}")
                    seen[index].append(seconds * 1e6)
                    inside[index].append(app_seconds * 1e6)
    finally:
        for worker in workers:
            worker.stop()
    first_us = [statistics.median(values) for values in first]
    again_us = [statistics.median(values) for values in again]
    first_inside_us = [statistics.median(values) for values in first_inside]
    again_inside_us = [statistics.median(values) for values in again_inside]
    return {
        "first_in_worker_us": first_inside_us,
        "hit_in_worker_us": again_inside_us,
        "fleet_in_worker_us": sum(first_inside_us),
        "workers": args.workers,
        "tokens": args.fleet_tokens,
        "first_request_us": first_us,
        "hit_request_us": again_us,
        "fleet_first_requests_us": sum(first_us),
        "fleet_verify_us": sum(f - a for f, a in zip(first_us, again_us, strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=1, help="bare/hit/hit/bare sequences")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4, help="fleet size")
    parser.add_argument("--fleet-tokens", type=int, default=50, help="new tokens sent to the fleet")
    parser.add_argument("--no-fleet", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON last")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install -y wrk)")

    now = time.time()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "rsa", "alg": "RS256"}
    idp = Idp([jwk])
    bearer = "Bearer " + jwt.encode(
        keycloak_claims(now), key, algorithm="RS256", headers={"kid": "rsa"}
    )
    figures: dict[str, Any] = {"measured": MEASURED, "cpus": os.cpu_count()}
    try:
        if not args.json:
            print(
                f"gunicorn gthread 1 worker x 4 threads, wrk -t1 -c{args.connections} "
                f"-d{args.duration}s, RS256 token of {len(bearer) - 7} chars; {MEASURED}"
            )
        figures |= throughput(idp, bearer, args)
        if not args.json:
            print(
                f"bare app {figures['bare_rps']:.1f} req/s, middleware cache hit "
                f"{figures['hit_rps']:.1f} req/s, non-2xx {figures['non_2xx']}\n"
                f"cache hit / bare req/s {figures['ratio']:.3f}  goal >= {GOAL:.2f}  "
                f"{'MET' if figures['ratio'] >= GOAL else 'MISSED'}"
            )
        if not args.no_fleet:
            figures["fleet"] = fleet(idp, key, now, args)
            if not args.json:
                print_fleet(figures["fleet"])
    finally:
        idp.stop()
    figures["jwks_requests"] = idp.requests
    if args.json:
        print(json.dumps(figures, sort_keys=True))


def print_fleet(fleet: dict[str, Any]) -> None:
    print(
        f"\nfleet: {fleet['workers']} gunicorn sync workers (one process each), "
        f"{fleet['tokens']} new tokens each sent to every worker in turn, then again; "
        "median us per request on a new connection"
    )
    print("  (round trip: client-side, new connection; in worker: the middleware call alone)")
    columns = zip(
        fleet["first_request_us"],
        fleet["hit_request_us"],
        fleet["first_in_worker_us"],
        fleet["hit_in_worker_us"],
        strict=True,
    )
    for index, (first, hit, first_in, hit_in) in enumerate(columns):
        print(
            f"  worker {index}: round trip first {first:8.1f} hit {hit:8.1f}"
            f" | in worker first {first_in:8.1f} hit {hit_in:6.1f}"
        )
    print(
        f"a new token costs the fleet {fleet['workers']} verifications: "
        f"{fleet['fleet_in_worker_us']:.1f} us of middleware time in all workers; round trips "
        f"{fleet['fleet_verify_us']:.1f} us more than {fleet['workers']} cache hits"
    )


if __name__ == "__main__":
    main()
