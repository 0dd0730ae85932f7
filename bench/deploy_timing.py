#!/usr/bin/env python3
"""Deploy timings of playbooks/deploy.yml on 1 and on N local systemd containers.

For each fleet size: a bare fact-gathering play (the baseline), first provision, a no-change
re-run, a code-only update and a dependency change, each timed as a whole ansible-playbook run.
Every figure is also given as a ratio to the baseline measured on the same hosts in the same run.
Writes deploy.json and deploy.md into the output directory. Containers are removed at the end.

  bench/deploy_timing.py OUT_DIR [--hosts 6]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("DJANGO_ASGI_IMAGE", "django-asgi/debian") + ":bookworm"


def run(cmd, **kw):
    start = time.monotonic()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, **kw)
    return round(time.monotonic() - start, 2)


def inventory(path, hosts):
    lines = ["all:", "  vars:", "    ansible_connection: community.docker.docker", "  children:",
             "    app_servers:", "      hosts:"] + [f"        {h}: {{}}" for h in hosts]
    path.write_text("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--hosts", type=int, default=6)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="django-asgi-bench-"))
    results = {}
    for size in (1, args.hosts):
        hosts = [f"bench-app{i}" for i in range(1, size + 1)]
        inv = work / f"inv-{size}.yml"
        inventory(inv, hosts)
        src = work / f"src-{size}"
        shutil.copytree(ROOT / "example", src)
        facts_pb = work / "facts.yml"
        facts_pb.write_text("- hosts: app_servers\n  gather_facts: true\n  tasks: []\n")
        common = ["-e", f"django_asgi_source={src}", "-e", "django_asgi_app_name=bench",
                  "-e", "django_asgi_project_module=mysite",
                  "-e", '{"django_asgi_env": {"DJANGO_ALLOWED_HOSTS": "localhost"}}',
                  "-e", '{"django_asgi_secret_env": {"DJANGO_SECRET_KEY": "bench-only-not-a-secret"}}',
                  "-e", "django_asgi_ca_bundle=/etc/ssl/certs/ca-certificates.crt"]
        pb = [".venv/bin/ansible-playbook", "-i", str(inv)]
        try:
            for h in hosts:
                subprocess.run(["docker", "rm", "-f", h], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                subprocess.run(["docker", "run", "-d", "--name", h, "--hostname", h, "--cap-add", "SYS_ADMIN",
                                "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
                                "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
                                "-v", "/var/cache/django-asgi-test:/var/cache/django_asgi:rw",
                                "--tmpfs", "/run", "--tmpfs", "/run/lock", IMAGE], check=True, stdout=subprocess.DEVNULL)
            for h in hosts:
                subprocess.run(["docker", "exec", h, "systemctl", "is-system-running", "--wait"], stdout=subprocess.DEVNULL)
            r = {"facts": run(pb + [str(facts_pb)])}
            r["first_provision"] = run(pb + ["playbooks/deploy.yml"] + common)
            r["no_change"] = run(pb + ["playbooks/deploy.yml"] + common)
            with open(src / "notes/views.py", "a") as fh:
                fh.write("# code-only change\n")
            r["code_only"] = run(pb + ["playbooks/deploy.yml"] + common)
            with open(src / "requirements.txt", "a") as fh:
                fh.write("python-dateutil\n")
            r["dependency_change"] = run(pb + ["playbooks/deploy.yml"] + common)
            r["ratios_to_facts"] = {k: round(v / r["facts"], 1) for k, v in r.items() if k != "facts"}
            results[size] = r
            print(size, r, flush=True)
        finally:
            subprocess.run(["docker", "rm", "-f", *hosts], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(work, ignore_errors=True)
    one, many = results[1], results[args.hosts]
    scale = {k: round(many[k] / one[k], 2) for k in ("facts", "first_provision", "no_change", "code_only", "dependency_change")}
    report = {"hosts": args.hosts, "cpus": os.cpu_count(), "runs": results, f"{args.hosts}_vs_1": scale}
    (out / "deploy.json").write_text(json.dumps(report, indent=1))
    rows = ["| Run | 1 host (s) | x facts | %d hosts (s) | x facts | %d vs 1 |" % (args.hosts, args.hosts), "| --- | --- | --- | --- | --- | --- |"]
    for k in ("facts", "first_provision", "no_change", "code_only", "dependency_change"):
        rows.append(f"| {k} | {one[k]} | {one['ratios_to_facts'].get(k, 1.0)} | {many[k]} | "
                    f"{many['ratios_to_facts'].get(k, 1.0)} | {scale[k]} |")
    text = "# Deploy timings (playbooks/deploy.yml, local containers, one run)\n\n" + "\n".join(rows) + "\n"
    (out / "deploy.md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
