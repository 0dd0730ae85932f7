#!/usr/bin/env python3
"""Summarise the rolling-update figures written by the 'rolling' scenario into report.md/.json.

  bench/report_rolling.py DIR    (DIR holds steady.json, update.json, unhealthy.json, rollback.json, forward.json)
"""
import json
import platform
import sys
from pathlib import Path

STEPS = [("steady", "steady state, no deploy"), ("update", "rolling update v1 -> v2"),
         ("unhealthy", "release with failing health check (stopped, rolled back)"),
         ("rollback", "rollback v2 -> v1"), ("forward", "rolling update v1 -> v4, pruning to 2 releases")]


def main():
    out = Path(sys.argv[1])
    data = {name: json.loads((out / f"{name}.json").read_text()) for name, _ in STEPS if (out / f"{name}.json").exists()}
    steady_p99 = data.get("steady", {}).get("p99_ms")
    rows = ["| Step | Requests | Failed | req/s | p50 ms | p99 ms | p99 vs steady |", "| --- | --- | --- | --- | --- | --- | --- |"]
    summary = {"machine": {"python": platform.python_version(), "machine": platform.machine(), "cpus": __import__("os").cpu_count()}, "steps": {}}
    for name, label in STEPS:
        d = data.get(name)
        if not d:
            continue
        ratio = round(d["p99_ms"] / steady_p99, 2) if steady_p99 and d.get("p99_ms") else None
        rows.append(f"| {label} | {d['sent']} | {d['failed']} | {d['rps']} | {d['p50_ms']} | {d['p99_ms']} | {ratio if ratio else '-'}x |")
        summary["steps"][name] = {k: d.get(k) for k in ("sent", "failed", "rps", "p50_ms", "p99_ms", "max_ms", "seconds", "releases",
                                                        "stale_keepalive_retries")}
        summary["steps"][name]["p99_vs_steady"] = ratio
    text = ("# Rolling update through HAProxy: 3 app servers, serial 1, 4 clients at 60 req/s\n\n"
            + "\n".join(rows) + "\n\nAll figures from one run of `bench/run rolling`; latency ratios compare with the steady-state run of the same session.\n")
    (out / "report.md").write_text(text)
    (out / "report.json").write_text(json.dumps(summary, indent=1))
    print(text)
    if any(d["failed"] for d in data.values()):
        sys.exit("requests failed during a step")


if __name__ == "__main__":
    main()
