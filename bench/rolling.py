"""Section 3 of the report: per server, a rolling update of 3 hosts under two request loops of at
least 10k requests each: one through HAProxy, one straight to the first host's app server (no load
balancer to retry while that host restarts). The timeline of its steps feeds the PNG. Then a
deploy window's drain and undrain, the rollout role's way against community.general.haproxy."""
import json
import re
import time
from datetime import datetime
from pathlib import Path

from harness import HOSTS_ROLL, LOAD_RATE, log


def rolling_update(h, server, source, host, single_url, lb_url):
    """Returns the rolling and the single-host figures of one deploy of source."""
    log(f"server {server}: rolling update of 3 hosts under load, through HAProxy and straight to {host}")
    single = h.load(single_url, f"single-{server}", LOAD_RATE["single"], start_first=0)
    rolling = h.load(lb_url, f"rolling-{server}", LOAD_RATE["rolling"])
    deploy_start = time.time()
    seconds, logfile = h.playbook("rolling", "playbooks/deploy.yml", f"update-{server}",
                                  {"django_asgi_server": server, "django_asgi_source": source})
    steps = deploy_steps(logfile)
    figures = {
        "rolling": {**h.finish_load(*rolling), "deploy_seconds": round(seconds, 1),
                    "deploy_started_at": deploy_start, "steps": steps},
        "single_host": {**h.finish_load(*single), "deploy_seconds": round(seconds, 1),
                        "restarts": [st["at"] for st in steps if st["step"] == "restart" and st["host"] == host]},
    }
    for kind in ("single_host", "rolling"):
        log(f"  {kind}: {figures[kind]['sent']} requests, {figures[kind]['failed']} failed, p99 {figures[kind]['p99_ms']} ms")
    return figures


def lb_drain(h):
    """Seconds of draining one app server and putting it back, several times, each way."""
    log("draining a host: the rollout role against community.general.haproxy")
    h.playbook("rolling", "bench/playbooks/lb-drain.yml", "lb-drain", {"bench_out": str(h.work)})
    return json.loads((h.work / "lb-drain.json").read_text())


def deploy_steps(logfile):
    """Wall-clock times of the rolling deploy's steps, from profile_tasks' per-task timestamps."""
    steps, pending = [], None
    host_order = iter(HOSTS_ROLL)
    names = {"Build": "build", "Migrate from one host": "migrate", "Drain the host in the load balancer": "drain",
             "Serve the release and wait until it answers the health check": "restart", "Put the host back in the load balancer": "ready"}
    current_host = None
    for line in Path(logfile).read_text().splitlines():
        # Task names of either role come with its name in front.
        task = re.match(r"TASK \[(?:django_asgi(?:_rollout)? : )?(.*?)\]", line)
        if task:
            pending = task.group(1) if task.group(1) in names else None
            continue
        stamp = re.match(r"\w+ (\d+ \w+ \d{4}\s+\d\d:\d\d:\d\d) ", line)
        if stamp and pending:
            when = datetime.strptime(re.sub(r"\s+", " ", stamp.group(1)), "%d %B %Y %H:%M:%S").timestamp()
            kind = names[pending]
            if kind == "drain":
                current_host = next(host_order, current_host)
            if kind == "restart" and steps and steps[-1]["step"] == "restart" and steps[-1]["host"] == current_host:
                pending = None
                continue
            steps.append({"step": kind, "host": current_host if kind in ("drain", "restart", "ready") else "",
                          "at": when})
            pending = None
    return steps
