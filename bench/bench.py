#!/usr/bin/env python3
"""The benchmark run behind `bench/run` (all of it) on local systemd containers:

1. deploy timings, 1 host and 6 hosts, of playbooks/deploy.yml against a bare fact-gathering play
   on the same hosts: first provision, no-change re-run, code-only update, dependency change;
2. per server, after switching the 3 rolling hosts to it: throughput of the role's defaults (the
   deployed unit) against a sweep of worker counts and worker classes (transient units on the same
   host), for a sync and an async view; a head-to-head re-measure when the sweep finds the
   defaults short of 95%;
3. per server: a rolling update of 3 hosts under two request loops of at least 10k requests each:
   one through HAProxy, one straight to the first host's app server (no load balancer to retry
   while that host restarts);
4. a PNG timeline of the default server's rolling update.

Writes bench/results/report.md, report.json and rolling-timeline.png. Every request loop is bounded
by count and time, and every figure compared is measured in this run. Loads go only to the bench
containers on this machine.
"""
import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from report import score  # bench/report.py: the one definition of a configuration's score

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
INV = BENCH / "inventory"
APP = "example"
HOSTS_ONE = ["bench-a1"]
HOSTS_SIX = [f"bench-b{i}" for i in range(1, 7)]
HOSTS_ROLL = HOSTS_SIX[:3]
# The sweep and the single-host request loop go to the first rolling host.
HOST_SINGLE = HOSTS_ROLL[0]
LB = "bench-lb1"
SERVERS = ["gunicorn_uvicorn", "uvicorn", "granian", "hypercorn", "gunicorn_asgi", "daphne"]
DEFAULT_SERVER = SERVERS[0]  # the role's default
EXTRA_REQUIREMENT = "python-dateutil==2.9.0.post0"  # what the dependency change adds
MIN_REQUESTS = 10000
# Below what every server sustains on this machine, so latency shows the deploy, not a saturated queue.
# Both loops run during the same rolling update and go on until each has sent 10k requests.
LOAD_CLIENTS, LOAD_RATE = 8, {"single": 250, "rolling": 250}
VIEWS = {"sync": "/", "async": "/async/"}


def log(msg):
    print(f"[{datetime.now():%H:%M:%S}] {msg}", flush=True)


class Bench:
    def __init__(self, out, sweep_seconds):
        self.out = out
        self.work = out / "work"
        self.logs = out / "logs"
        self.sweep_seconds = sweep_seconds
        self.results = {"started": datetime.now().isoformat(timespec="seconds")}
        for d in (self.work, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.counter = 0
        self.live = {}
        self.lb_ready = False

    # --- helpers -----------------------------------------------------------------------------
    def run(self, argv, name, check=True, env=None):
        self.counter += 1
        logfile = self.logs / f"{self.counter:03d}-{name}.log"
        t0 = time.monotonic()
        with open(logfile, "w") as fh:
            rc = subprocess.call(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                                 env={**os.environ, **(env or {})})
        seconds = time.monotonic() - t0
        if check and rc != 0:
            tail = logfile.read_text()[-3000:]
            raise SystemExit(f"bench: {name} failed (rc={rc}), log {logfile}:\n{tail}")
        return seconds, logfile

    def playbook(self, inventory, playbook, name, extra=None, check=True):
        argv = ["ansible-playbook", "-i", str(INV / f"{inventory}.yml"), playbook]
        for key, value in (extra or {}).items():
            argv += ["-e", f"{key}={value}"]
        return self.run(argv, name, check=check)

    def source(self, name, marker, extra_requirement=None):
        """A copy of the example project with one changed line: a new release, same dependencies."""
        dest = self.work / "src" / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(ROOT / "example", dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "var"))
        with open(dest / "notes" / "views.py", "a") as fh:
            fh.write(f"# bench release {marker}\n")
        if extra_requirement:
            with open(dest / "requirements.txt", "a") as fh:
                fh.write(extra_requirement + "\n")
        return str(dest)

    @staticmethod
    def ip(host):
        return subprocess.check_output(
            ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", host], text=True).strip()

    @staticmethod
    def dexec(host, *argv, check=True):
        return subprocess.run(["docker", "exec", host, *argv], capture_output=True, text=True, check=check)

    def wait_http(self, url, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rc = subprocess.call(["curl", "-fsS", "-o", "/dev/null", "--max-time", "2", url],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if rc == 0:
                return True
            time.sleep(0.3)
        return False

    def wrk(self, url, seconds):
        out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "--timeout", "5s", url],
                             capture_output=True, text=True, timeout=seconds + 30).stdout

        def ms(text):
            value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
            return round(float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit], 2)

        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
        p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        socket_errors = re.search(r"Socket errors: (.*)", out)
        return {"rps": round(rps, 1), "p50_ms": p50, "p99_ms": p99,
                "non_2xx": int(errors.group(1)) if errors else 0,
                "socket_errors": socket_errors.group(1) if socket_errors else ""}

    def measure_views(self, base, warm=True):
        """A second of warm-up, then each view for sweep_seconds."""
        if warm:
            self.wrk(base + "/", 1)
        return {view: self.wrk(base + path, self.sweep_seconds) for view, path in VIEWS.items()}

    def load(self, url, name, rate, start_first=1.5):
        """Start a bounded request loop; returns (thread, stop_file, out_file)."""
        stop = self.work / f"{name}.stop"
        out = self.work / f"{name}.json"
        for f in (stop, out):
            f.unlink(missing_ok=True)
        argv = [sys.executable, str(BENCH / "loadgen.py"), "--url", url, "--out", str(out), "--stop-file", str(stop),
                "--min-requests", str(MIN_REQUESTS), "--max-requests", str(MIN_REQUESTS * 10), "--max-seconds", "180",
                "--clients", str(LOAD_CLIENTS), "--rate", str(rate)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        time.sleep(start_first)
        return proc, stop, out

    @staticmethod
    def finish_load(proc, stop, out):
        stop.touch()
        proc.wait(timeout=240)
        return json.loads(out.read_text())

    # --- 1. deploy timings -------------------------------------------------------------------
    def timings(self):
        result = {}
        for label, inventory, hosts in (("1 host", "one", HOSTS_ONE), ("6 hosts", "six", HOSTS_SIX)):
            log(f"deploy timings, {label}")
            facts = [self.playbook(inventory, "bench/playbooks/facts.yml", f"facts-{inventory}")[0] for _ in range(3)]
            row = {"facts": round(statistics.median(facts), 2)}
            seconds, logfile = self.playbook(inventory, "playbooks/deploy.yml", f"first-{inventory}")
            row["first provision"] = round(seconds, 2)
            first_phases = deploy_phases(logfile)
            nochange = [self.playbook(inventory, "playbooks/deploy.yml", f"nochange-{inventory}")[0] for _ in range(3)]
            row["no-change re-run"] = round(statistics.median(nochange), 2)
            code = self.source(f"code-{inventory}", f"code-{inventory}")
            seconds, logfile = self.playbook(inventory, "playbooks/deploy.yml", f"code-{inventory}", {"django_asgi_source": code})
            row["code-only update"] = round(seconds, 2)
            phases = {"code-only update": deploy_phases(logfile)}
            deps = self.source(f"deps-{inventory}", f"deps-{inventory}", EXTRA_REQUIREMENT)
            seconds, logfile = self.playbook(inventory, "playbooks/deploy.yml", f"deps-{inventory}", {"django_asgi_source": deps})
            row["dependency change"] = round(seconds, 2)
            phases["dependency change"] = deploy_phases(logfile)
            # The 6 hosts now run the default server on this release: the first per-server step reuses it.
            self.live = {"server": DEFAULT_SERVER, "source": deps}
            row["phases"] = {"first provision": first_phases, **phases}
            row["hosts"] = len(hosts)
            result[label] = row
            log(f"  {row}")
        self.results["timings"] = result

    # --- 2 and 3. per server -----------------------------------------------------------------
    def variants(self, server, workers_default):
        """Command lines of the sweep (the role's own flags, on port 9000). Each is (name, workers, argv)."""
        venv = f"/srv/{APP}/current/venv/bin"
        entry = "django_asgi_entry:application"
        # Every worker count with the server's fastest class; the other class at the default count.
        counts = sorted({2, 4, 8, workers_default})
        out = []
        for w in counts:
            if server == "gunicorn_uvicorn":
                classes = {"UvicornWorker (uvloop+httptools)": "uvicorn_worker.UvicornWorker",
                           "UvicornH11Worker (asyncio+h11)": "uvicorn_worker.UvicornH11Worker"}
                for cname, cls in classes.items():
                    out.append((cname, w, [f"{venv}/gunicorn", entry, "-k", cls, "-w", str(w), "-b", "0.0.0.0:9000",
                                           "--control-socket", f"/run/{APP}-bench/gunicorn.ctl"]))
            elif server == "gunicorn_asgi":
                for loop in ("uvloop", "asyncio"):
                    out.append((f"asgi worker, {loop}", w, [f"{venv}/gunicorn", entry, "-k", "asgi", "--asgi-loop", loop,
                                                          "-w", str(w), "-b", "0.0.0.0:9000",
                                                          "--control-socket", f"/run/{APP}-bench/gunicorn.ctl"]))
            elif server == "uvicorn":
                for cname, extra in (("uvloop+httptools", ["--loop", "uvloop", "--http", "httptools"]),
                                     ("asyncio+h11", ["--loop", "asyncio", "--http", "h11"])):
                    out.append((cname, w, [f"{venv}/uvicorn", entry, "--host", "0.0.0.0", "--port", "9000", "--workers", str(w),
                                           "--lifespan", "on", "--no-access-log", *extra]))
            elif server == "hypercorn":
                for cls in ("uvloop", "asyncio"):
                    out.append((f"{cls} worker", w, [f"{venv}/hypercorn", entry, "-b", "0.0.0.0:9000", "-w", str(w), "-k", cls]))
            elif server == "granian":
                for loop in ("uvloop", "asyncio"):
                    out.append((f"{loop} loop", w, [f"{venv}/granian", entry, "--interface", "asgi", "--host", "0.0.0.0",
                                                    "--port", "9000", "--workers", str(w), "--loop", loop, "--no-access-log"]))
            elif server == "daphne" and w == workers_default:
                out.append(("single process", 1, [f"{venv}/daphne", "-b", "0.0.0.0", "-p", "9000", entry]))
        fastest = out[0][0]
        # The fastest class at the default count is what the role's unit runs: measured as the default.
        return [v for v in out if (v[0] == fastest) != (v[1] == workers_default) or server == "daphne"]

    @contextlib.contextmanager
    def variant(self, host, argv):
        """A transient unit running argv as the app user on port 9000; yields its base URL, or None
        if it did not answer."""
        unit = "bench-variant"
        self.dexec(host, "systemctl", "stop", unit, check=False)
        self.dexec(host, "systemctl", "reset-failed", unit, check=False)
        self.dexec(host, "systemd-run", f"--unit={unit}", f"--property=User={APP}", f"--property=Group={APP}",
                   f"--property=EnvironmentFile=/etc/{APP}/env", f"--property=EnvironmentFile=/etc/{APP}/secrets.env",
                   f"--property=WorkingDirectory=/srv/{APP}/current", f"--property=RuntimeDirectory={APP}-bench", *argv)
        base = f"http://{self.ip(host)}:9000"
        try:
            yield base if self.wait_http(base + "/health/") else None
        finally:
            self.dexec(host, "systemctl", "stop", unit, check=False)

    def run_variant(self, host, argv):
        with self.variant(host, argv) as base:
            return self.measure_views(base) if base else {"error": "did not answer"}

    def workers_of(self, host):
        unit = self.dexec(host, "systemctl", "cat", f"{APP}.service").stdout
        match = re.search(r"--workers (\d+)", unit)
        return int(match.group(1)) if match else 1

    def per_server(self, servers):
        host = HOST_SINGLE
        lb_url = f"http://{self.ip(LB)}/"
        single_url = f"http://{self.ip(host)}:8000/"
        self.results["servers"] = {}
        for server in servers:
            log(f"server {server}: switching {', '.join(HOSTS_ROLL)} (no load)")
            # The requirements of the dependency change: code updates of the default server reuse its venv.
            v1, v2 = (self.source(f"{server}-{v}", f"{server}-{v}", EXTRA_REQUIREMENT) for v in ("v1", "v2"))
            if not self.lb_ready:
                # The first switch configures HAProxy too. Where the server is already live since the
                # deploy timings, that is all it does.
                v1 = self.live["source"] if self.live.get("server") == server else v1
                self.playbook("rolling", "playbooks/deploy.yml", f"switch-{server}",
                              {"django_asgi_server": server, "django_asgi_source": v1, "django_asgi_rollout_serial": "100%"})
                self.lb_ready = True
            else:
                # All three hosts at once, role only: nothing is measured during the switch.
                self.playbook("rolling", "bench/playbooks/switch.yml", f"switch-{server}",
                              {"django_asgi_server": server, "django_asgi_source": v1})
            if not self.wait_http(single_url + "health/", 30) or not self.wait_http(lb_url + "health/", 30):
                raise SystemExit(f"bench: {server} did not come up after the switch (see bench/results/logs)")
            row = {"workers_default": self.workers_of(host)}

            log(f"server {server}: throughput of the defaults and the sweep on {host}")
            row["default"] = self.measure_views(single_url.rstrip("/"))
            row["sweep"] = []
            variants = self.variants(server, row["workers_default"])
            for cname, workers, argv in variants:
                figures = self.run_variant(host, argv)
                row["sweep"].append({"class": cname, "workers": workers, **({"views": figures} if "error" not in figures else figures)})
            row["confirm"] = self.confirm(host, single_url.rstrip("/"), row, variants)

            # One rolling deploy, two request loops: one through HAProxy (the rolling figure), one straight
            # to the first host's app server, which restarts in the same deploy with no load balancer
            # between it and the loop (the single-host figure).
            log(f"server {server}: rolling update of 3 hosts under load, through HAProxy and straight to {host}")
            single = self.load(single_url, f"single-{server}", LOAD_RATE["single"], start_first=0)
            rolling = self.load(lb_url, f"rolling-{server}", LOAD_RATE["rolling"])
            deploy_start = time.time()
            seconds, logfile = self.playbook("rolling", "playbooks/deploy.yml", f"update-{server}",
                                             {"django_asgi_server": server, "django_asgi_source": v2})
            steps = deploy_steps(logfile)
            row["rolling"] = {**self.finish_load(*rolling), "deploy_seconds": round(seconds, 1),
                              "deploy_started_at": deploy_start, "steps": steps}
            row["single_host"] = {**self.finish_load(*single), "deploy_seconds": round(seconds, 1),
                                  "restarts": [st["at"] for st in steps if st["step"] == "restart" and st["host"] == host]}
            for kind in ("single_host", "rolling"):
                log(f"  {kind}: {row[kind]['sent']} requests, {row[kind]['failed']} failed, p99 {row[kind]['p99_ms']} ms")
            self.results["servers"][server] = row

    def confirm(self, host, base, row, variants):
        """The sweep measures each configuration once, for a short time, and its best figure is the
        highest of several noisy ones. Where that best is 5% or more above the defaults, the two run
        side by side (the role's unit and the variant on its own port) and are measured in turns,
        twice each: the sums of those rounds decide the goal."""
        scored = [(score(c["views"]), c) for c in row["sweep"] if "views" in c]
        if not scored:
            return None
        best_score, best = max(scored, key=lambda item: item[0])
        if score(row["default"]) >= 0.95 * best_score:
            return None
        argv = next(a for name, workers, a in variants if name == best["class"] and workers == best["workers"])
        log(f"  re-measuring the defaults against {best['class']} x{best['workers']}, in turns")
        rounds = {"default": [], "best": []}
        with self.variant(host, argv) as other:
            if not other:
                return None
            for _ in range(2):
                rounds["default"].append(self.measure_views(base, warm=False))
                rounds["best"].append(self.measure_views(other, warm=False))

        def summed(runs):
            return {view: {"rps": round(sum(r[view]["rps"] for r in runs) / len(runs), 1),
                           "p50_ms": max(r[view]["p50_ms"] for r in runs), "p99_ms": max(r[view]["p99_ms"] for r in runs)}
                    for view in VIEWS}
        return {"class": best["class"], "workers": best["workers"], "rounds": len(rounds["default"]),
                "seconds": self.sweep_seconds, "default": summed(rounds["default"]), "best": summed(rounds["best"])}


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


def deploy_steps(logfile):
    """Wall-clock times of the rolling deploy's steps, from profile_tasks' per-task timestamps."""
    steps, pending = [], None
    host_order = iter(HOSTS_ROLL)
    names = {"Build": "build", "Migrate from one host": "migrate", "Drain the host in the load balancer": "drain",
             "Restart the service": "restart", "Put the host back in the load balancer": "ready"}
    current_host = None
    for line in Path(logfile).read_text().splitlines():
        task = re.match(r"TASK \[(?:django_asgi : )?(.*?)\]", line)
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


def machine():
    def cmd(*argv):
        try:
            return subprocess.check_output(argv, text=True, stderr=subprocess.DEVNULL).strip().splitlines()[0]
        except Exception:
            return "?"
    mem = cmd("awk", "/MemTotal/ {printf \"%.1f GiB\", $2/1048576}", "/proc/meminfo")
    return {"cpus": os.cpu_count(), "memory": mem, "kernel": platform.release(), "python": platform.python_version(),
            "os": cmd("sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"), "ansible": cmd("ansible", "--version"),
            "docker": cmd("docker", "--version"), "wrk": cmd("sh", "-c", "wrk -v 2>&1 | head -1")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(BENCH / "results"))
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--sweep-seconds", type=int, default=2)
    ap.add_argument("--skip-timings", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    bench = Bench(out, args.sweep_seconds)
    bench.results["machine"] = machine()
    bench.results["load"] = {"clients": LOAD_CLIENTS, "rate": LOAD_RATE, "min_requests": MIN_REQUESTS}
    t0 = time.monotonic()

    def stop(signum, frame):
        # timeout(1) in bench/run bounds the run: keep what was measured and say so in the report.
        # It signals this process and then its group, this one included: the second must not cut
        # short the writing of raw.json.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.results["stopped"] = f"stopped by signal {signum} at the time bound"
        raise SystemExit(f"bench: stopped by signal {signum}")
    signal.signal(signal.SIGTERM, stop)
    try:
        if not args.skip_timings:
            bench.timings()
        bench.per_server([s for s in args.servers.split(",") if s])
    finally:
        bench.results["seconds"] = round(time.monotonic() - t0, 1)
        (out / "raw.json.tmp").write_text(json.dumps(bench.results, indent=1))
        (out / "raw.json.tmp").replace(out / "raw.json")
    log(f"bench done in {bench.results['seconds']} s")


if __name__ == "__main__":
    main()
