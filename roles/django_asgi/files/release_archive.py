#!/usr/bin/env python3
"""Pack a Django project into a reproducible release archive on the controller.

The same source always gives the same bytes (sorted entries, fixed owners and times), so the
sha256 of the archive names the release: one id per deploy on every host, and re-running an
unchanged source changes nothing. Prints JSON: {"digest": ..., "archive": ...}.

  release_archive.py --out-dir DIR --name APP --src PROJECT_DIR [--exclude PATTERN ...]
  release_archive.py --out-dir DIR --name APP --git-dir CLONE --rev COMMIT [--exclude PATTERN ...]
"""
import argparse
import fnmatch
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

FIXED_MTIME = 946684800  # 2000-01-01: stable, and never "in the future" for make-like tools


def excluded(name, excludes):
    return any(fnmatch.fnmatch(name, p) for p in excludes)


def normalize(info):
    """Same owner, time and modes whatever the checkout: the bytes depend on the content only."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = FIXED_MTIME
    # Code is read-only for the app user: rw-r--r-- / rwxr-xr-x, never group/world-writable.
    info.mode = 0o755 if info.isdir() or info.mode & 0o100 else 0o644
    info.pax_headers = {}
    return info


def tar_directory(src, excludes):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(src):
            dirs[:] = sorted(d for d in dirs if not excluded(d, excludes))
            for name in sorted(dirs) + sorted(files):
                if name in files and excluded(name, excludes):
                    continue
                path = os.path.join(root, name)
                if os.path.islink(path) and name in dirs:
                    continue
                info = normalize(tar.gettarinfo(path, arcname=os.path.relpath(path, src)))
                if info.isfile():
                    with open(path, "rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
    return buf.getvalue()


def tar_git(git_dir, rev, excludes):
    """The commit's tree, with the same excludes and normalization as a directory. (git archive
    --mtime would fix the times, but git before 2.42, Debian 12's 2.39 included, lacks it.)"""
    raw = subprocess.run(
        ["git", "-C", git_dir, "archive", "--format=tar", rev], check=True, capture_output=True,
    ).stdout
    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(raw)) as src, \
            tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in sorted(src.getmembers(), key=lambda i: i.name):
            if any(excluded(part, excludes) for part in info.name.split("/")):
                continue
            tar.addfile(normalize(info), src.extractfile(info) if info.isfile() else None)
    return buf.getvalue()


def dir_digest(root):
    """Digest of every file's relative path and bytes: a new role version changes it."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--src")
    ap.add_argument("--git-dir")
    ap.add_argument("--rev")
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("--fingerprint-dir", help="also print role_digest: a digest of this directory's files")
    args = ap.parse_args()

    if args.src:
        if not os.path.isfile(os.path.join(args.src, "manage.py")):
            sys.exit(f"django_asgi_source: {args.src} has no manage.py at its root")
        data = tar_directory(args.src, args.exclude)
    else:
        data = tar_git(args.git_dir, args.rev, args.exclude)
    digest = hashlib.sha256(data).hexdigest()
    # An archive is the project's code: readable by the deploying user only (archives written by
    # earlier versions of this script were 0644: they are tightened too).
    os.makedirs(args.out_dir, mode=0o700, exist_ok=True)
    os.chmod(args.out_dir, 0o700)
    for entry in os.scandir(args.out_dir):
        if entry.is_file(follow_symlinks=False) and entry.stat().st_mode & 0o077:
            os.chmod(entry.path, 0o600)
    archive = os.path.join(args.out_dir, f"{args.name}-{digest[:16]}.tar.gz")
    if not os.path.exists(archive):
        tmp = archive + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(data)
        os.replace(tmp, archive)
    result = {"digest": digest, "archive": archive}
    if args.fingerprint_dir:
        result["role_digest"] = dir_digest(args.fingerprint_dir)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
