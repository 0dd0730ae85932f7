"""Deploy timings of another revision against this tree, in one run (bench/run compare REV).

For each of the two, on fresh containers of the bench fleet (1 host, then 6): a bare fact-gathering
play (median of 3), the first provision, a no-change re-run (median of 3) and a code-only update,
each also as a ratio to the facts play. The other revision runs its own playbooks, roles and
ansible.cfg against this tree's bench inventories, so both deploy the same hosts the same way.
Writes <out>/report.md and report.json."""
import argparse
import io
import json
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INV = ROOT / "bench" / "inventory"
HOSTS = {"one": ["bench-a1"], "six": [f"bench-b{i}" for i in range(1, 7)]}
COLUMNS = ["facts", "first provision", "no-change re-run", "code-only update"]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(argv, cwd, logfile):
    t0 = time.monotonic()
    with open(logfile, "w") as fh:
        rc = subprocess.call(argv, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
    if rc != 0:
        sys.exit(f"compare: {' '.join(map(str, argv))} failed (rc={rc}), log {logfile}")
    return time.monotonic() - t0


def fresh_fleet(out):
    hosts = [h for group in HOSTS.values() for h in group]
    subprocess.call(["docker", "rm", "-f", *hosts], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run(["ansible-playbook", "-i", INV / "fleet.yml", "playbooks/demo-hosts.yml"], ROOT, out / "fleet.log")


def timings(label, project, out, source):
    """One revision's row per inventory."""
    rows = {}
    fresh_fleet(out)
    for inventory in HOSTS:
        def deploy(name, *extra):
            return run(["ansible-playbook", "-i", INV / f"{inventory}.yml", "playbooks/deploy.yml", *extra],
                       project, out / f"{label}-{inventory}-{name}.log")
        facts = [run(["ansible-playbook", "-i", INV / f"{inventory}.yml", ROOT / "bench/playbooks/facts.yml"],
                     project, out / f"{label}-{inventory}-facts.log") for _ in range(3)]
        row = {"facts": statistics.median(facts), "first provision": deploy("first")}
        row["no-change re-run"] = statistics.median(deploy(f"nochange{i}") for i in range(3))
        row["code-only update"] = deploy("code", "-e", f"django_asgi_source={source}")
        rows[inventory] = {k: round(v, 2) for k, v in row.items()}
        log(f"  {label}, {len(HOSTS[inventory])} host(s): {rows[inventory]}")
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rev", help="the revision to compare this tree with")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "compare"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.check_output(["git", "rev-parse", "--short", args.rev], cwd=ROOT, text=True).strip()
    head = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
    other = out / f"tree-{commit}"
    if not other.exists():
        archive = subprocess.check_output(["git", "archive", "--format=tar", commit], cwd=ROOT)
        other.mkdir(parents=True)
        tarfile.open(fileobj=io.BytesIO(archive)).extractall(other)
    # A code-only update: the example project with one line more.
    source = out / "code"
    subprocess.check_call(["rm", "-rf", str(source)])
    subprocess.check_call(["cp", "-r", str(ROOT / "example"), str(source)])
    with open(source / "notes" / "views.py", "a") as fh:
        fh.write("# bench compare: a code-only update\n")

    result = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "revisions": {}}
    for label, project in ((commit, other), (f"{head} (this tree)", ROOT)):
        log(f"deploy timings of {label}")
        result["revisions"][label] = timings(label.split()[0], project, out, source)
    (out / "report.json").write_text(json.dumps(result, indent=2))

    lines = [f"# Deploy timings, {commit} against this tree", "",
             f"One run of `bench/run compare {args.rev}` started {result['started']}: seconds of wall time, and in brackets"
             " the ratio to the bare fact-gathering play on the same hosts (median of 3, as the no-change re-run).", "",
             "| revision | hosts | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for label, rows in result["revisions"].items():
        for inventory, row in rows.items():
            cells = [f"{row['facts']}"] + [f"{row[c]} ({row[c] / row['facts']:.1f}x)" for c in COLUMNS[1:]]
            lines.append(f"| {label} | {len(HOSTS[inventory])} | " + " | ".join(cells) + " |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
