"""Deploy timings of another revision against this tree, in one run (bench/run compare REV).

For each of the two, on fresh containers of the bench fleet (1 host, then 6): a bare fact-gathering
play, the first provision, a no-change re-run and a code-only update (each but the first the median of 3),
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


def timings(label, project, out, sources):
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
        # Three updates in a row, each a new release: one alone is within the machine's noise (10 % here).
        row["code-only update"] = statistics.median(deploy(f"code{i}", "-e", f"django_asgi_source={source}")
                                                    for i, source in enumerate(sources))
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
    # Code-only updates: the example project with one line more, a different one each.
    sources = [out / f"code{i}" for i in range(3)]
    for i, source in enumerate(sources):
        subprocess.check_call(["rm", "-rf", str(source)])
        subprocess.check_call(["cp", "-r", str(ROOT / "example"), str(source)])
        with open(source / "notes" / "views.py", "a") as fh:
            fh.write(f"# bench compare: code-only update {i}\n")

    result = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "revisions": {}}
    for label, project in ((commit, other), (f"{head} (this tree)", ROOT)):
        log(f"deploy timings of {label}")
        result["revisions"][label] = timings(label.split()[0], project, out, sources)
    (out / "report.json").write_text(json.dumps(result, indent=2))

    lines = [f"# Deploy timings, {commit} against this tree", "",
             f"One run of `bench/run compare {args.rev}` started {result['started']}: seconds of wall time, and in brackets"
             " the ratio to the bare fact-gathering play on the same hosts; every figure but the first provision is the median of 3.", "",
             "| revision | hosts | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for label, rows in result["revisions"].items():
        for inventory, row in rows.items():
            cells = [f"{row['facts']}"] + [f"{row[c]} ({row[c] / row['facts']:.1f}x)" for c in COLUMNS[1:]]
            lines.append(f"| {label} | {len(HOSTS[inventory])} | " + " | ".join(cells) + " |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
