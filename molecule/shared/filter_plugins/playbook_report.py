"""playbook_report: what a nested ansible-playbook run did, from the ansible.posix.json callback's
output (molecule/shared/tasks/playbook.yml)."""
import json


def _said(result):
    """What a failed result says: its message, a command's stderr, and those of its failed items."""
    parts = [str(result.get(key)) for key in ("msg", "stderr") if result.get(key)]
    for item in result.get("results", []):
        if isinstance(item, dict) and item.get("failed"):
            parts.append(_said(item))
    return "\n".join(parts)


def playbook_report(stdout):
    """stats: per host ok, changed, failures, unreachable, skipped, rescued; plays: each play or
    serial batch in order, with its name and the hosts its tasks ran on; failed: each failed or
    unreachable task result (host, task, msg: its message, a command's stderr, those of its failed
    loop items). Output that is not the callback's JSON (the run stopped before any play) gives
    empty ones."""
    try:
        report = json.loads(stdout[stdout.index("{"):]) if "{" in stdout else {}
    except ValueError:
        report = {}
    plays, failed = [], []
    for play in report.get("plays", []):
        hosts = []
        for task in play.get("tasks", []):
            for host, result in task.get("hosts", {}).items():
                if host not in hosts:
                    hosts.append(host)
                if result.get("failed") or result.get("unreachable"):
                    failed.append({"host": host, "task": task["task"]["name"], "msg": _said(result)})
        plays.append({"name": play["play"]["name"], "hosts": hosts})
    return {"stats": report.get("stats", {}), "plays": plays, "failed": failed}


class FilterModule:
    def filters(self):
        return {"playbook_report": playbook_report}
