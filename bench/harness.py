"""What every section of the benchmark uses: the hosts, running playbooks and commands with a log
each, sources to deploy, wrk, and bounded request loops (bench/loadgen.py)."""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

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


class Harness:
    def __init__(self, out, sweep_seconds):
        self.out = out
        self.work = out / "work"
        self.logs = out / "logs"
        self.sweep_seconds = sweep_seconds
        for d in (self.work, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.counter = 0

    def run(self, argv, name, check=True, env=None):
        """Run argv with its output in logs/NNN-name.log; returns (seconds, log file)."""
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

    @staticmethod
    def wait_http(url, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rc = subprocess.call(["curl", "-fsS", "-o", "/dev/null", "--max-time", "2", url],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if rc == 0:
                return True
            time.sleep(0.3)
        return False

    @staticmethod
    def wrk(url, seconds):
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
        """Start a bounded request loop; returns (process, stop_file, out_file)."""
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

