"""playbook_report: what a nested ansible-playbook run did, from the ansible.posix.json callback's
output (molecule/shared/tasks/playbook.yml)."""
import json


def playbook_report(stdout):
    """stats: per host ok, changed, failures, unreachable, skipped, rescued; plays: each play or
    serial batch in order, with its name and the hosts its tasks ran on; failed: each failed or
    unreachable task result (host, task, msg). Output that is not the callback's JSON (the run
    stopped before any play) gives empty ones."""
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
                    failed.append({"host": host, "task": task["task"]["name"], "msg": str(result.get("msg", ""))})
        plays.append({"name": play["play"]["name"], "hosts": hosts})
    return {"stats": report.get("stats", {}), "plays": plays, "failed": failed}


class FilterModule:
    def filters(self):
        return {"playbook_report": playbook_report}
