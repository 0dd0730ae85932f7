#!/usr/bin/env python3
"""Turn bench/results/raw.json (written by bench/bench.py) into report.md, report.json and
rolling-timeline.png, checking every goal of the benchmark against the figures of that one run.

  bench/report.py [RESULTS_DIR]
"""
import json
import math
import os
import sys
from datetime import datetime
from pathlib import Path

DEFAULT_SERVER = "gunicorn_uvicorn"
KINDS = ["first provision", "no-change re-run", "code-only update", "dependency change"]


def score(views):
    """One figure per configuration: the geometric mean of the sync and async views' req/s."""
    return math.sqrt(views["sync"]["rps"] * views["async"]["rps"])


def goals_timings(t):
    """(goal, met, measured figure, why not: the reason when it is not met)."""
    goals = []
    one, six = t["1 host"], t["6 hosts"]
    cpus = os.cpu_count()
    for label, row in (("1 host", one), ("6 hosts", six)):
        ratio = row["no-change re-run"] / row["facts"]
        goals.append((f"no-change re-run <= 2x facts ({label})", ratio <= 2,
                      f"{ratio:.2f}x ({row['no-change re-run']} s vs {row['facts']} s)",
                      "the probe, the lock and the controller-side steps cost more than gathering facts"))
        per_host = row["code-only update"] / row["hosts"] if label == "6 hosts" else row["code-only update"]
        goals.append((f"code-only update <= 20 s per host ({label})", per_host <= 20, f"{per_host:.1f} s per host", ""))
    for kind in KINDS:
        ratio = six[kind] / one[kind]
        goals.append((f"6 hosts <= 1.5x 1 host: {kind}", ratio <= 1.5, f"{ratio:.2f}x ({six[kind]} s vs {one[kind]} s)",
                      why_fleet(kind, one, six, cpus)))
    return goals


def why_fleet(kind, one, six, cpus):
    """Why 6 hosts cost more than 1.5x of 1 host here, from the phases of the same two runs."""
    p1, p6 = one.get("phases", {}).get(kind), six.get("phases", {}).get(kind)
    shared = (f"the 6 hosts are containers sharing this machine's {cpus} CPUs with Ansible, so 6 builds at once "
              "take about as long as 6 builds one after the other would")
    if kind == "no-change re-run":
        return (f"every task runs once per host on the controller, and the 6 hosts' probes share the {cpus} CPUs "
                f"(the bare facts play itself takes {six['facts'] / one['facts']:.1f}x as long on 6 hosts)")
    if not p1 or not p6:
        return shared
    text = f"build {p6['build and migrate']} s vs {p1['build and migrate']} s: {shared}"
    if p6["roll"] > 2 * p1["roll"]:
        text += (f"; roll {p6['roll']} s vs {p1['roll']} s: the deploy activates one host at a time "
                 f"(django_asgi_rollout_serial 1, {p6['roll'] / six['hosts']:.1f} s per host), by design")
    return text


def timeline_png(server_row, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rolling = server_row["rolling"]
    start = rolling["started_at"]
    seconds = [p["second"] for p in rolling["timeline"]]
    fig, axes = plt.subplots(3, 1, figsize=(11, 7), sharex=True)
    axes[0].plot(seconds, [p["sent"] for p in rolling["timeline"]], color="tab:blue")
    axes[0].set_ylabel("requests/s")
    axes[1].plot(seconds, [p["p99_ms"] for p in rolling["timeline"]], color="tab:orange")
    axes[1].set_ylabel("p99 ms")
    axes[2].bar(seconds, [p["failed"] for p in rolling["timeline"]], color="tab:red", width=0.9)
    axes[2].set_ylabel("failed")
    axes[2].set_ylim(0, max(1, max(p["failed"] for p in rolling["timeline"])))
    axes[2].set_xlabel("seconds since the request loop started")
    colors = {"build": "grey", "migrate": "purple", "drain": "tab:red", "restart": "black", "ready": "tab:green"}
    for step in rolling["steps"]:
        x = step["at"] - start
        for ax in axes:
            ax.axvline(x, color=colors.get(step["step"], "grey"), linestyle="--", linewidth=0.8)
        axes[0].annotate(f"{step['step']} {step['host'].replace('bench-', '')}".strip(), (x, 1), xycoords=("data", "axes fraction"),
                         rotation=90, fontsize=7, va="top", ha="right")
    fig.suptitle(f"Rolling update of 3 hosts through HAProxy ({DEFAULT_SERVER}): {rolling['sent']} requests, "
                 f"{rolling['failed']} failed, p99 {rolling['p99_ms']} ms")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results")
    raw = json.loads((out / "raw.json").read_text())
    m = raw["machine"]
    lines = ["# django_asgi benchmark", "",
             f"One run of `bench/run` started {raw['started']}, {raw['seconds']} s in all. Machine: {m['cpus']} CPUs, "
             f"{m['memory']}, {m['os']}, kernel {m['kernel']}, Python {m['python']}, {m['ansible']}, {m['docker']}, {m['wrk']}. "
             "Hosts are systemd containers on this machine: they, the load generators and Ansible share its CPUs.", ""]
    if raw.get("stopped"):
        lines += [f"**Incomplete:** the run was {raw['stopped']}; what is below was measured before that.", ""]
    goals = []

    if "timings" in raw:
        t = raw["timings"]
        lines += ["## Deploy timings (`playbooks/deploy.yml`, seconds of wall time)", "",
                  "| | facts (bare play) | " + " | ".join(KINDS) + " |", "| --- |" + " --- |" * (len(KINDS) + 1)]
        for label in ("1 host", "6 hosts"):
            row = t[label]
            lines.append(f"| {label} | {row['facts']} | " + " | ".join(
                f"{row[k]} ({row[k] / row['facts']:.1f}x)" for k in KINDS) + " |")
        lines += ["", "Ratios in brackets are to the bare fact-gathering play on the same hosts. The no-change figure is "
                  "the median of 3 runs, facts the median of 3. The package cache of the test suite is shared by the "
                  "hosts, so first provision measures the role, not the network.", "",
                  "Where the time goes (seconds, from the same runs' task timestamps): the build runs on every host at "
                  "once, the roll one host at a time.", "",
                  "| | run | lock and load balancer | build and migrate | roll | prune and unlock |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for label in ("1 host", "6 hosts"):
            for kind, p in t[label].get("phases", {}).items():
                if p:
                    lines.append(f"| {label} | {kind} | {p['before build']} | {p['build and migrate']} | {p['roll']} | "
                                 f"{p['prune and unlock']} |")
        lines.append("")
        goals += goals_timings(t)

    servers = raw.get("servers", {})
    if servers:
        lines += ["## Throughput: the role's defaults against the sweep", "",
                  "`wrk -t2 -c16` from this machine for 2 s per view after a warm-up; sync view `/`, async view `/async/`. "
                  "`default` is the unit the role deployed; the sweep runs the same release as transient units on the same host. "
                  "Score: geometric mean of both views' req/s. Where the defaults score below 95% of the sweep's best, "
                  "both run side by side and are measured again in turns, twice each (mean req/s, highest p50/p99): "
                  "that decides the goal.", "",
                  "| server | configuration | workers | sync req/s | sync p50/p99 ms | async req/s | async p50/p99 ms | score |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for server, row in servers.items():
            configs = [("**default (role unit)**", row["workers_default"], row["default"])]
            configs += [(c["class"], c["workers"], c.get("views")) for c in row["sweep"]]
            best = max((score(v) for _, _, v in configs[1:] if v), default=None)
            for name, workers, views in configs:
                if not views:
                    lines.append(f"| {server} | {name} | {workers} | did not answer | | | | |")
                    continue
                s, a = views["sync"], views["async"]
                lines.append(f"| {server} | {name} | {workers} | {s['rps']} | {s['p50_ms']}/{s['p99_ms']} | {a['rps']} | "
                             f"{a['p50_ms']}/{a['p99_ms']} | {score(views):.0f} |")
            confirm = row.get("confirm")
            if confirm:
                for name, views in ((f"default, in turns ({confirm['rounds']} x {confirm['seconds']} s per view)", confirm["default"]),
                                    (f"{confirm['class']}, in turns ({confirm['rounds']} x {confirm['seconds']} s per view)", confirm["best"])):
                    s, a = views["sync"], views["async"]
                    workers = row["workers_default"] if name.startswith("default") else confirm["workers"]
                    lines.append(f"| {server} | {name} | {workers} | {s['rps']} | {s['p50_ms']}/{s['p99_ms']} | {a['rps']} | "
                                 f"{a['p50_ms']}/{a['p99_ms']} | {score(views):.0f} |")
            if best:
                ratio = score(row["default"]) / best
                figure = f"{ratio * 100:.0f}% in the sweep"
                if confirm:
                    ratio = score(confirm["default"]) / score(confirm["best"])
                    figure += f", {ratio * 100:.0f}% in turns against {confirm['class']} x{confirm['workers']}"
                top = confirm or max((c for c in row["sweep"] if c.get("views")), key=lambda c: score(c["views"]))
                if len(row["sweep"]) == 1:
                    # Nothing to choose (Daphne: one process, one protocol stack): the variant is the
                    # default's own configuration, so the gap is the unit's, or noise.
                    why = ("the sweep's only configuration is the default's own, run bare: the gap is between the role's "
                           "unit (socket-activated, sandboxed, proxy headers, timeouts) and that bare process, or noise "
                           "of one single-process server sharing 2 CPUs with wrk")
                else:
                    why = (f"{top['class']} with {top['workers']} workers did better on this machine's {os.cpu_count()} CPUs, "
                           f"which the load generator shares; the role's default is {row['workers_default']} workers")
                goals.append((f"{server}: defaults >= 95% of the best swept configuration", ratio >= 0.95, figure, why))
        lines += ["", "## Zero downtime: code updates under load", "",
                  "A rolling update of 3 app servers (`playbooks/deploy.yml`, serial 1, a new release) under two bounded "
                  f"request loops at once, each of {raw['load']['clients']} keep-alive clients, at least 10k requests and 180 s "
                  "at most, running before, during and after the deploy. Rolling: through HAProxy, "
                  f"{raw['load']['rate']['rolling']} req/s. Single host: straight to the first host's app server, "
                  f"{raw['load']['rate']['single']} req/s, with no load balancer to retry while that host switches and "
                  "restarts (HAProxy draining it changes nothing for this loop).", "",
                  "| server | kind | requests | failed | req/s | p50 ms | p99 ms | max ms | deploy s | stale keep-alive retries |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for server, row in servers.items():
            for kind, label in (("single_host", "single host"), ("rolling", "3-host rolling")):
                r = row[kind]
                lines.append(f"| {server} | {label} | {r['sent']} | {r['failed']} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | "
                             f"{r['max_ms']} | {r['deploy_seconds']} | {r['stale_keepalive_retries']} |")
                goals.append((f"{server}, {label}: 0 failed of >= 10k requests", r["failed"] == 0 and r["sent"] >= 10000,
                              f"{r['failed']} failed of {r['sent']}", "see the deploy's log in logs/"))
        lines += ["", "A request fails on a connection error, a timeout or any non-2xx answer. A GET that fails on a reused "
                  "keep-alive connection before any byte of an answer is sent once more on a new connection, as browsers do "
                  "(RFC 9112 9.3.1); those are counted as stale keep-alive retries, not hidden.", ""]
        if DEFAULT_SERVER in servers:
            timeline_png(servers[DEFAULT_SERVER], out / "rolling-timeline.png")
            lines += ["## Timeline of a rolling update", "", "![rolling update timeline](rolling-timeline.png)", ""]

    drain = raw.get("lb_drain")
    if drain:
        lines += ["## Draining a host: the rollout role against community.general.haproxy", "",
                  f"One app server drained and put back {drain['cycles']} times through HAProxy's runtime API, each step "
                  "waiting until it took effect: by the rollout role's `lb-server` entry point (raw socat; drain waits for "
                  "in-flight requests to finish while health checks go on, ready for the check to see it up), then by "
                  "`community.general.haproxy` (`state: disabled, drain: true`, then `state: enabled`, `wait: true`, "
                  "`wait_interval: 1`; disabling stops health checks, so the way back waits for them to rise again).", "",
                  "| way | seconds | per cycle |", "| --- | --- | --- |",
                  f"| rollout role (raw socat) | {drain['role_seconds']} | {drain['role_seconds'] / drain['cycles']:.2f} |",
                  f"| community.general.haproxy | {drain['module_seconds']} | {drain['module_seconds'] / drain['cycles']:.2f} |", ""]
        ratio = drain["module_seconds"] / drain["role_seconds"]
        goals.append(("host drain and undrain: the rollout role's way no slower than community.general.haproxy",
                      ratio >= 1, f"module {ratio:.2f}x the role's time", "see logs/ for both runs"))
    lines += ["## Goals", "", "| goal | met | measured | why not |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {'yes' if ok else '**no**'} | {figure} | {'' if ok else why} |" for name, ok, figure, why in goals]
    lines.append("")
    (out / "report.md").write_text("\n".join(lines))
    (out / "report.json").write_text(json.dumps({**raw, "goals": [{"goal": n, "met": ok, "measured": f, "why_not": "" if ok else w}
                                                                  for n, ok, f, w in goals]}, indent=1))
    print("\n".join(lines))
    print(f"report: {out / 'report.md'} ({datetime.now():%H:%M:%S})")


if __name__ == "__main__":
    main()
