"""Section 1 of the report: deploy timings of playbooks/deploy.yml on 1 and 6 hosts against a bare
fact-gathering play on the same hosts: first provision, no-change re-run, code-only update,
dependency change, each with its phases."""
import re
import statistics
from pathlib import Path

from harness import DEFAULT_SERVER, EXTRA_REQUIREMENT, HOSTS_ONE, HOSTS_SIX, log


def deploy_timings(h):
    """Returns (the timings, the source the 6 hosts now run with the default server)."""
    result, live_source = {}, None
    for label, inventory, hosts in (("1 host", "one", HOSTS_ONE), ("6 hosts", "six", HOSTS_SIX)):
        log(f"deploy timings, {label}")
        facts = [h.playbook(inventory, "bench/playbooks/facts.yml", f"facts-{inventory}")[0] for _ in range(3)]
        row = {"facts": round(statistics.median(facts), 2)}
        seconds, logfile = h.playbook(inventory, "playbooks/deploy.yml", f"first-{inventory}")
        row["first provision"] = round(seconds, 2)
        first_phases = deploy_phases(logfile)
        nochange = [h.playbook(inventory, "playbooks/deploy.yml", f"nochange-{inventory}")[0] for _ in range(3)]
        row["no-change re-run"] = round(statistics.median(nochange), 2)
        code = h.source(f"code-{inventory}", f"code-{inventory}")
        seconds, logfile = h.playbook(inventory, "playbooks/deploy.yml", f"code-{inventory}", {"django_asgi_source": code})
        row["code-only update"] = round(seconds, 2)
        phases = {"code-only update": deploy_phases(logfile)}
        deps = h.source(f"deps-{inventory}", f"deps-{inventory}", EXTRA_REQUIREMENT)
        seconds, logfile = h.playbook(inventory, "playbooks/deploy.yml", f"deps-{inventory}", {"django_asgi_source": deps})
        row["dependency change"] = round(seconds, 2)
        phases["dependency change"] = deploy_phases(logfile)
        # The 6 hosts now run the default server on this release: the first per-server step reuses it.
        live_source = deps
        row["phases"] = {"first provision": first_phases, **phases}
        row["hosts"] = len(hosts)
        result[label] = row
        log(f"  {row}")
    return result, {"server": DEFAULT_SERVER, "source": live_source}


def deploy_phases(logfile):
    """Seconds of a deploy's phases, from profile_tasks' running total at each task: before the
    build (lock, load balancer), build and migrate (all hosts at once), the roll (host by host)."""
    marks, pending = {}, None
    starts = {"Build": "build", "Sort the host by whether it needs a deploy window": "roll",
              "Remove releases beyond django_asgi_keep_releases": "finish"}
    total = 0.0
    for line in Path(logfile).read_text().splitlines():
        task = re.match(r"TASK \[(.*?)\]", line)
        if task:
            pending = starts.get(task.group(1))
            continue
        stamp = re.search(r"\s(\d+):(\d\d):([\d.]+) \*+\s*$", line)
        if stamp:
            total = int(stamp.group(1)) * 3600 + int(stamp.group(2)) * 60 + float(stamp.group(3))
            if pending and pending not in marks:
                marks[pending] = total
            pending = None
    if not {"build", "roll", "finish"} <= marks.keys():
        return {}
    return {"before build": round(marks["build"], 1), "build and migrate": round(marks["roll"] - marks["build"], 1),
            "roll": round(marks["finish"] - marks["roll"], 1), "prune and unlock": round(total - marks["finish"], 1)}
