#!/usr/bin/env python3
"""Bounded HTTP load for zero-downtime checks: N keep-alive clients send GET requests until a
stop file appears, the request budget is spent, or the time limit passes, whichever is first.
Writes JSON: sent, failed (connection errors, timeouts, non-2xx), latency percentiles, the
releases that answered, and a per-second timeline.

Like browsers and urllib3 (RFC 9112, 9.3.1), a GET that fails on a *reused* keep-alive connection
before any byte of a response (the server closed the idle connection as it restarted) is sent again
once on a new connection; those are counted in stale_keepalive_retries, not hidden. A failure on a
fresh connection, a timeout, or any non-2xx answer is a failed request.

  loadgen.py --url http://10.0.0.5/ --out result.json [--stop-file F [--min-requests N]] [--max-requests N]
             [--max-seconds S] [--clients C] [--rate R] [--host-header H]
Only point it at this machine or your own test hosts.
"""
import argparse
import http.client
import json
import os
import threading
import time
import urllib.parse

RELEASE_HEADER = "x-django-asgi-release"


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stop-file")
    ap.add_argument("--max-requests", type=int, default=20000)
    ap.add_argument("--min-requests", type=int, default=0, help="the stop file counts only once this many were sent")
    ap.add_argument("--max-seconds", type=float, default=300)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rate", type=float, default=0, help="requests/s over all clients, 0 = as fast as possible")
    ap.add_argument("--host-header", default="localhost")
    ap.add_argument("--timeout", type=float, default=10)
    args = ap.parse_args()

    url = urllib.parse.urlsplit(args.url)
    path = url.path or "/"
    lock = threading.Lock()
    start = time.monotonic()
    started_at = time.time()
    deadline = start + args.max_seconds
    state = {"sent": 0, "failed": 0, "errors": {}, "latencies": [], "releases": {}, "timeline": {}, "stale_retries": 0}
    stop = threading.Event()
    interval = args.clients / args.rate if args.rate else 0

    def record(ok, latency, release, error=None):
        second = int(time.monotonic() - start)
        with lock:
            state["sent"] += 1
            slot = state["timeline"].setdefault(second, {"sent": 0, "failed": 0, "latencies": []})
            slot["sent"] += 1
            if ok:
                state["latencies"].append(latency)
                slot["latencies"].append(latency)
                state["releases"][release] = state["releases"].get(release, 0) + 1
            else:
                state["failed"] += 1
                slot["failed"] += 1
                state["errors"][error] = state["errors"].get(error, 0) + 1

    def take_budget():
        with lock:
            if state["sent"] + state.get("inflight", 0) >= args.max_requests:
                return False
            state["inflight"] = state.get("inflight", 0) + 1
            return True

    def client():
        conn = None
        while not stop.is_set() and time.monotonic() < deadline:
            if not take_budget():
                stop.set()
                break
            t0 = time.monotonic()
            try:
                try:
                    reused = conn is not None
                    if conn is None:
                        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=args.timeout)
                    conn.request("GET", path, headers={"Host": args.host_header})
                    resp = conn.getresponse()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if not reused:
                        raise
                    # The idle connection was closed under us: one retry on a new connection.
                    with lock:
                        state["stale_retries"] += 1
                    conn.close()
                    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=args.timeout)
                    conn.request("GET", path, headers={"Host": args.host_header})
                    resp = conn.getresponse()
                resp.read()
                ok = 200 <= resp.status < 300
                record(ok, time.monotonic() - t0, resp.getheader(RELEASE_HEADER, "-"), None if ok else f"HTTP {resp.status}")
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as exc:  # every failure counts, whatever its kind
                record(False, time.monotonic() - t0, None, type(exc).__name__)
                if conn is not None:
                    conn.close()
                conn = None
            finally:
                with lock:
                    state["inflight"] -= 1
            if interval:
                time.sleep(max(0.0, interval - (time.monotonic() - t0)))
        if conn is not None:
            conn.close()

    def watch_stop_file():
        while not stop.is_set() and time.monotonic() < deadline:
            if args.stop_file and os.path.exists(args.stop_file) and state["sent"] >= args.min_requests:
                stop.set()
            time.sleep(0.1)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    threads.append(threading.Thread(target=watch_stop_file, daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    elapsed = time.monotonic() - start
    lat = state["latencies"]
    result = {
        "url": args.url,
        "started_at": started_at,
        "seconds": round(elapsed, 2),
        "sent": state["sent"],
        "failed": state["failed"],
        "errors": state["errors"],
        "stale_keepalive_retries": state["stale_retries"],
        "rps": round(state["sent"] / elapsed, 1) if elapsed else 0,
        "p50_ms": round(percentile(lat, 50) * 1000, 2) if lat else None,
        "p99_ms": round(percentile(lat, 99) * 1000, 2) if lat else None,
        "max_ms": round(max(lat) * 1000, 2) if lat else None,
        "releases": state["releases"],
        "timeline": [
            {"second": s, "sent": v["sent"], "failed": v["failed"],
             "p99_ms": round(percentile(v["latencies"], 99) * 1000, 2) if v["latencies"] else None}
            for s, v in sorted(state["timeline"].items())
        ],
    }
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps({k: result[k] for k in ("sent", "failed", "rps", "p50_ms", "p99_ms", "releases")}))


if __name__ == "__main__":
    main()
