#!/usr/bin/env python3
"""bench/run restarts -> report.md and report.json: failed requests per server across many restarts
under a direct keep-alive loop of GETs and POSTs (bench/playbooks/restarts.yml), by kind.

  report_restarts.py RESULTS_DIR
"""
import json
import statistics
import sys
from pathlib import Path

SERVERS = ["gunicorn_uvicorn", "gunicorn_asgi", "uvicorn", "hypercorn", "daphne", "granian"]
KINDS = ["reset_fresh", "reset_reused", "http_5xx", "http_other", "timeout"]
MODES = [("deploy", "as a deploy restarts (`<app>-restart`)"), ("plain", "`systemctl restart`")]


def cell(d):
    if d is None:
        return "not measured"
    kinds = ", ".join(f"{k} {d['failed_by_kind'][k]}" for k in KINDS if d["failed_by_kind"].get(k))
    return f"{d['failed']} / {d['sent']} ({d['posts_ok']} POSTs ok)" + (f": {kinds}" if kinds else "")


def main():
    out = Path(sys.argv[1])
    rows, summary = [], {}
    for server in SERVERS:
        figures = {}
        for mode, _ in MODES:
            path = out / f"{server}-{mode}.json"
            figures[mode] = json.loads(path.read_text()) if path.exists() else None
        summary[server] = {m: (None if d is None else {k: d[k] for k in ("restarts", "sent", "failed", "failed_by_kind",
                                                                        "posts_ok", "stale_keepalive_retries", "p99_ms")})
                           for m, d in figures.items()}
        counts = [str(d["restarts"]) if d else "-" for d in figures.values()]
        rows.append(f"| {server} | {' / '.join(counts)} | {cell(figures['deploy'])} | {cell(figures['plain'])} |")
    lines = [
        "# Restarts under load",
        "",
        "Each server on its own host, two hosts at a time (each loop runs only while its host restarts), restarted many times in a row under a direct keep-alive loop (2 clients,",
        "40 req/s, every third request a POST that writes a row; a GET failing on a reused connection is sent",
        "once more, as clients do, a POST never). Failed requests / requests sent, and the failures by kind:",
        "reset before any response on a new connection (`reset_fresh`) or on a reused one (`reset_reused`),",
        "`http_5xx`, `timeout`.",
        "",
        f"| server | restarts ({MODES[0][0]} / {MODES[1][0]}) | {MODES[0][1]}: failed / sent | {MODES[1][1]}: failed / sent |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
    ]
    probe_rows = []
    for server in SERVERS:
        path = out / f"{server}-probe.json"
        if not path.exists():
            continue
        d = json.loads(path.read_text())
        probe, restart = statistics.median(d["probe_ms"]), statistics.median(d["restart_ms"])
        summary[server]["probe"] = {"probe_ms_median": probe, "restart_ms_median": restart, **d}
        probe_rows.append(f"| {server} | {probe / 1000:.2f} s | {restart / 1000:.2f} s | {probe / restart:.2f} |")
    if probe_rows:
        lines += [
            "## What proving a release costs",
            "",
            "Before `current` moves, a deploy boots the release beside the live one on its private socket",
            "(`<app>-probe@<release>`, one worker) until its health path answers, then stops it. Medians of",
            f"{len(d['probe_ms'])} samples per server, one host at a time, against a restart as a deploy does it (until the",
            "health path answers again). Ansible adds its own few tasks around the probe.",
            "",
            "| server | probe | restart | probe / restart |",
            "| --- | --- | --- | --- |",
            *probe_rows,
            "",
        ]
    (out / "report.md").write_text("\n".join(lines))
    (out / "report.json").write_text(json.dumps(summary, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
