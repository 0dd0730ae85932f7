#!/usr/bin/env python3
"""Bounded HTTP load for zero-downtime checks: N keep-alive clients send requests until a stop
file appears, the request budget is spent, or the time limit passes, whichever is first.
Writes JSON: sent, failed, failures by kind, latency percentiles, the releases that answered, and
a per-second timeline.

With --post-every N, every Nth request of a client is a POST to --post-path (it writes a row in the
example app), so that a check covers what a client can never send twice.

Like browsers and urllib3, a client looks at an idle keep-alive connection before reusing it: one
the server has closed meanwhile (its FIN arrived: the socket reads as ready) is dropped and the
request goes on a new connection (counted in closed_before_reuse). Without that look, every POST
sent on a connection the server closed while it sat idle fails, whenever the close happened.
Like them too (RFC 9112, 9.3.1), a GET that fails on a *reused* keep-alive connection
before any byte of a response (the server closed the idle connection as it restarted) is sent again
once on a new connection; those are counted in stale_keepalive_retries, not hidden. A POST is never
sent again. Failure kinds:
  reset_fresh    the connection broke before any response, on a new connection
  reset_reused   the same on a reused keep-alive connection (a POST; a GET is retried once, above)
  timeout        no answer within --timeout
  http_5xx, http_other   an answer outside 2xx

  loadgen.py --url http://10.0.0.5/ --out result.json [--stop-file F [--min-requests N]] [--max-requests N]
             [--max-seconds S] [--clients C] [--rate R] [--host-header H] [--post-every N]
Only point it at this machine or your own test hosts.
"""
import argparse
import http.client
import json
import os
import select
import socket
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
    ap.add_argument("--post-every", type=int, default=0, help="every Nth request of a client is a POST (0: none)")
    ap.add_argument("--post-path", default="/notes/")
    args = ap.parse_args()

    url = urllib.parse.urlsplit(args.url)
    path = url.path or "/"
    lock = threading.Lock()
    start = time.monotonic()
    started_at = time.time()
    deadline = start + args.max_seconds
    state = {"sent": 0, "failed": 0, "errors": {}, "kinds": {}, "latencies": [], "releases": {}, "timeline": {},
             "stale_retries": 0, "posts": 0, "closed_before_reuse": 0}
    stop = threading.Event()
    interval = args.clients / args.rate if args.rate else 0

    def record(ok, latency, release, error=None, kind=None):
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
                state["kinds"][kind] = state["kinds"].get(kind, 0) + 1

    def take_budget():
        with lock:
            if state["sent"] + state.get("inflight", 0) >= args.max_requests:
                return False
            state["inflight"] = state.get("inflight", 0) + 1
            return True

    def client():
        conn = None
        count = 0
        while not stop.is_set() and time.monotonic() < deadline:
            if not take_budget():
                stop.set()
                break
            count += 1
            post = args.post_every > 0 and count % args.post_every == 0
            method, target = ("POST", args.post_path) if post else ("GET", path)
            body = json.dumps({"text": f"loadgen {count}"}) if post else None
            headers = {"Host": args.host_header}
            if post:
                headers["Content-Type"] = "application/json"
            t0 = time.monotonic()
            reused = False
            try:
                try:
                    if conn is not None and conn.sock is not None and select.select([conn.sock], [], [], 0)[0]:
                        with lock:
                            state["closed_before_reuse"] += 1
                        conn.close()
                        conn = None
                    reused = conn is not None
                    if conn is None:
                        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=args.timeout)
                    conn.request(method, target, body=body, headers=headers)
                    resp = conn.getresponse()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if not reused or post:
                        raise
                    # The idle connection was closed under us: one retry of the GET on a new connection.
                    with lock:
                        state["stale_retries"] += 1
                    conn.close()
                    reused = False
                    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=args.timeout)
                    conn.request(method, target, body=body, headers=headers)
                    resp = conn.getresponse()
                resp.read()
                ok = 200 <= resp.status < 300
                kind = None if ok else ("http_5xx" if resp.status >= 500 else "http_other")
                record(ok, time.monotonic() - t0, resp.getheader(RELEASE_HEADER, "-"),
                       None if ok else f"{method} HTTP {resp.status}", kind)
                if post and ok:
                    with lock:
                        state["posts"] += 1
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as exc:  # every failure counts, whatever its kind
                if isinstance(exc, (socket.timeout, TimeoutError)):
                    kind = "timeout"
                else:
                    kind = "reset_reused" if reused else "reset_fresh"
                record(False, time.monotonic() - t0, None, f"{method} {type(exc).__name__}", kind)
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
        "failed_by_kind": state["kinds"],
        "posts_ok": state["posts"],
        "stale_keepalive_retries": state["stale_retries"],
        "closed_before_reuse": state["closed_before_reuse"],
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
    print(json.dumps({k: result[k] for k in ("sent", "failed", "failed_by_kind", "rps", "p50_ms", "p99_ms", "releases")}))


if __name__ == "__main__":
    main()
