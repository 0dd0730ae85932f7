#!/usr/bin/env python3
"""The benchmark run behind `bench/run` (all of it) on local systemd containers:

1. deploy timings, 1 host and 6 hosts, of playbooks/deploy.yml against a bare fact-gathering play
   on the same hosts: first provision, no-change re-run, code-only update, dependency change;
2. per server, after switching the 3 rolling hosts to it: throughput of the role's defaults (the
   deployed unit) against a sweep of worker counts and worker classes (transient units on the same
   host), for a sync and an async view; a head-to-head re-measure when the sweep finds the
   defaults short of 95%;
3. per server: a rolling update of 3 hosts under two request loops of at least 10k requests each:
   one through HAProxy, one straight to the first host's app server (no load balancer to retry
   while that host restarts);
4. a PNG timeline of the default server's rolling update;
5. a deploy window's drain and undrain: the rollout role's raw socat against community.general.haproxy.

Writes bench/results/report.md, report.json and rolling-timeline.png. Every request loop is bounded
by count and time, and every figure compared is measured in this run. Loads go only to the bench
containers on this machine.

One file a section: timings.py (1), throughput.py (2), rolling.py (3, 5), report.py (4, and the
report); harness.py holds what they share (hosts, playbook runs, wrk, request loops). This file
runs them in order.
"""
import argparse
import json
import os
import platform
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

from harness import (BENCH, HOST_SINGLE, HOSTS_ROLL, LB, LOAD_CLIENTS, LOAD_RATE, MIN_REQUESTS, SERVERS,
                     EXTRA_REQUIREMENT, Harness, log)
from rolling import lb_drain, rolling_update
from throughput import throughput
from timings import deploy_timings


def per_server(h, servers, results, live):
    """Sections 2 and 3 for each server, after switching the 3 rolling hosts to it. live: what the
    hosts run already (the deploy timings leave the default server on them), or {}."""
    host = HOST_SINGLE
    lb_url = f"http://{h.ip(LB)}/"
    single_url = f"http://{h.ip(host)}:8000/"
    results["servers"] = {}
    lb_ready = False
    for server in servers:
        log(f"server {server}: switching {', '.join(HOSTS_ROLL)} (no load)")
        # The requirements of the dependency change: code updates of the default server reuse its venv.
        v1, v2 = (h.source(f"{server}-{v}", f"{server}-{v}", EXTRA_REQUIREMENT) for v in ("v1", "v2"))
        if not lb_ready:
            # The first switch configures HAProxy too. Where the server is already live since the
            # deploy timings, that is all it does.
            v1 = live["source"] if live.get("server") == server else v1
            h.playbook("rolling", "playbooks/deploy.yml", f"switch-{server}",
                       {"django_asgi_server": server, "django_asgi_source": v1, "django_asgi_rollout_serial": "100%"})
            lb_ready = True
        else:
            # All three hosts at once, role only: nothing is measured during the switch.
            h.playbook("rolling", "bench/playbooks/switch.yml", f"switch-{server}",
                       {"django_asgi_server": server, "django_asgi_source": v1})
        if not h.wait_http(single_url + "health/", 30) or not h.wait_http(lb_url + "health/", 30):
            raise SystemExit(f"bench: {server} did not come up after the switch (see bench/results/logs)")
        row = throughput(h, server, host, single_url.rstrip("/"))
        # One rolling deploy, two request loops: one through HAProxy (the rolling figure), one straight
        # to the first host's app server, which restarts in the same deploy with no load balancer
        # between it and the loop (the single-host figure).
        row.update(rolling_update(h, server, v2, host, single_url, lb_url))
        results["servers"][server] = row


def machine():
    def cmd(*argv):
        try:
            return subprocess.check_output(argv, text=True, stderr=subprocess.DEVNULL).strip().splitlines()[0]
        except Exception:
            return "?"
    mem = cmd("awk", "/MemTotal/ {printf \"%.1f GiB\", $2/1048576}", "/proc/meminfo")
    return {"cpus": os.cpu_count(), "memory": mem, "kernel": platform.release(), "python": platform.python_version(),
            "os": cmd("sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"), "ansible": cmd("ansible", "--version"),
            "docker": cmd("docker", "--version"), "wrk": cmd("sh", "-c", "wrk -v 2>&1 | head -1")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(BENCH / "results"))
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--sweep-seconds", type=int, default=2)
    ap.add_argument("--skip-timings", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    h = Harness(out, args.sweep_seconds)
    results = {"started": datetime.now().isoformat(timespec="seconds"), "machine": machine(),
               "load": {"clients": LOAD_CLIENTS, "rate": LOAD_RATE, "min_requests": MIN_REQUESTS}}
    t0 = time.monotonic()

    def stop(signum, frame):
        # timeout(1) in bench/run bounds the run: keep what was measured and say so in the report.
        # It signals this process and then its group, this one included: the second must not cut
        # short the writing of raw.json.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        results["stopped"] = f"stopped by signal {signum} at the time bound"
        raise SystemExit(f"bench: stopped by signal {signum}")
    signal.signal(signal.SIGTERM, stop)
    try:
        live = {}
        if not args.skip_timings:
            results["timings"], live = deploy_timings(h)
        per_server(h, [s for s in args.servers.split(",") if s], results, live)
        if results["servers"]:
            results["lb_drain"] = lb_drain(h)
    finally:
        results["seconds"] = round(time.monotonic() - t0, 1)
        (out / "raw.json.tmp").write_text(json.dumps(results, indent=1))
        (out / "raw.json.tmp").replace(out / "raw.json")
    log(f"bench done in {results['seconds']} s")


if __name__ == "__main__":
    main()
