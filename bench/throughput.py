"""Section 2 of the report: per server, throughput of the role's defaults (the deployed unit)
against a sweep of worker counts and worker classes (transient units on the same host, port 9000),
for a sync and an async view; a head-to-head re-measure when the sweep finds the defaults short of
95%."""
import contextlib
import re

from harness import APP, VIEWS, log
from report import score  # bench/report.py: the one definition of a configuration's score


def throughput(h, server, host, base):
    """The defaults on base (the role's unit on host) against the sweep."""
    row = {"workers_default": workers_of(h, host)}
    log(f"server {server}: throughput of the defaults and the sweep on {host}")
    row["default"] = h.measure_views(base)
    row["sweep"] = []
    candidates = variants(server, row["workers_default"])
    for cname, workers, argv in candidates:
        figures = run_variant(h, host, argv)
        row["sweep"].append({"class": cname, "workers": workers, **({"views": figures} if "error" not in figures else figures)})
    row["confirm"] = confirm(h, host, base, row, candidates)
    return row


def variants(server, workers_default):
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
def variant(h, host, argv):
    """A transient unit running argv as the app user on port 9000; yields its base URL, or None
    if it did not answer."""
    unit = "bench-variant"
    h.dexec(host, "systemctl", "stop", unit, check=False)
    h.dexec(host, "systemctl", "reset-failed", unit, check=False)
    h.dexec(host, "systemd-run", f"--unit={unit}", f"--property=User={APP}", f"--property=Group={APP}",
            f"--property=EnvironmentFile=/etc/{APP}/env", f"--property=EnvironmentFile=/etc/{APP}/secrets.env",
            f"--property=WorkingDirectory=/srv/{APP}/current", f"--property=RuntimeDirectory={APP}-bench", *argv)
    base = f"http://{h.ip(host)}:9000"
    try:
        yield base if h.wait_http(base + "/health/") else None
    finally:
        h.dexec(host, "systemctl", "stop", unit, check=False)


def run_variant(h, host, argv):
    with variant(h, host, argv) as base:
        return h.measure_views(base) if base else {"error": "did not answer"}


def workers_of(h, host):
    unit = h.dexec(host, "systemctl", "cat", f"{APP}.service").stdout
    match = re.search(r"--workers (\d+)", unit)
    return int(match.group(1)) if match else 1


def confirm(h, host, base, row, candidates):
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
    argv = next(a for name, workers, a in candidates if name == best["class"] and workers == best["workers"])
    log(f"  re-measuring the defaults against {best['class']} x{best['workers']}, in turns")
    rounds = {"default": [], "best": []}
    with variant(h, host, argv) as other:
        if not other:
            return None
        for _ in range(2):
            rounds["default"].append(h.measure_views(base, warm=False))
            rounds["best"].append(h.measure_views(other, warm=False))

    def summed(runs):
        return {view: {"rps": round(sum(r[view]["rps"] for r in runs) / len(runs), 1),
                       "p50_ms": max(r[view]["p50_ms"] for r in runs), "p99_ms": max(r[view]["p99_ms"] for r in runs)}
                for view in VIEWS}
    return {"class": best["class"], "workers": best["workers"], "rounds": len(rounds["default"]),
            "seconds": h.sweep_seconds, "default": summed(rounds["default"]), "best": summed(rounds["best"])}
