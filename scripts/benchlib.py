# SPDX-License-Identifier: GPL-2.0
"""What the CRIU benchmarks share (bench-criu, bench-lazy, bench-migrate):
finding a CRIU with our series, reading its stats and pagemaps (through
the tests' reader of CRIU images), and process, size and log helpers."""
import os
import shutil
import signal
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tests' reader of CRIU's images (test/img_helpers.py).
sys.path.insert(0, os.path.join(ROOT, "test"))
from img_helpers import criu_img_records, pb_fields  # noqa: E402
from helpers import read_file, wait_for as _wait_for  # noqa: E402
PAGE = 4096
RUN_DIR = "/run/uffdwp"
CANDIDATES = (os.path.join(ROOT, "build", "criu-uffdwp", "sbin", "criu"),  # make criu
              "/opt/criu-uffdwp/sbin/criu", "/opt/criu/sbin/criu", "/usr/local/sbin/criu")
HOOKS_MARK = b"needs a plugin that tracks memory"  # a string of the series' memory tracking patches

STATS_MAGIC = 0x57093306
PAGEMAP_MAGIC = 0x56084025
PE_PARENT, PE_LAZY, PE_PRESENT = 1, 2, 4

DUMP_FIELDS = {1: "freezing_time", 2: "frozen_time", 3: "memdump_time", 4: "memwrite_time",
               5: "pages_scanned", 6: "pages_skipped_parent", 7: "pages_written",
               8: "irmap_resolve", 9: "pages_lazy", 10: "page_pipes", 11: "page_pipe_bufs",
               12: "shpages_scanned", 13: "shpages_skipped_parent", 14: "shpages_written"}
RESTORE_FIELDS = {1: "pages_compared", 2: "pages_skipped_cow", 3: "forking_time",
                  4: "restore_time", 5: "pages_restored"}


class CannotRun(Exception):
    """The benchmark cannot go on: exit non-zero with this message."""


class Terminated(Exception):
    pass


def log(msg):
    print(msg, flush=True)


# --------------------------------------------------------------- CRIU images

def read_stats(d, kind="dump"):
    """CRIU's stats-KIND (the stats image has no .img) in d as a dict, times in ms.
    pages_written counts private and shared pages (CRIU's pages_written plus
    shpages_written); private_pages_written is CRIU's own."""
    path = os.path.join(d, f"stats-{kind}")
    if not os.path.exists(path):
        path += ".img"
        if not os.path.exists(path):
            return {}
    (rec,) = criu_img_records(path, STATS_MAGIC)
    names = DUMP_FIELDS if kind == "dump" else RESTORE_FIELDS
    out = {}
    for msg in rec.get(1 if kind == "dump" else 2, []):
        for f, vals in pb_fields(msg).items():
            if f in names:
                name = names[f]
                out[name] = vals[0] / 1000.0 if name.endswith("_time") else vals[0]
    if kind == "dump":
        out["private_pages_written"] = out.get("pages_written", 0)
        out["pages_written"] = out["private_pages_written"] + out.get("shpages_written", 0)
    return out


def read_pagemap(path):
    """(pages_id, [(vaddr, nr_pages, flags)]) of a pagemap-*.img."""
    recs = criu_img_records(path, PAGEMAP_MAGIC)
    pages_id = recs[0].get(1, [0])[0]
    out = []
    for e in recs[1:]:
        flags = e[4][0] if 4 in e else PE_PARENT if e.get(3, [0])[0] else PE_PRESENT
        out.append((e[1][0], (e.get(5) or e[2])[0], flags))
    return pages_id, out


def log_times(path):
    """Where the time of a CRIU run went, from its -v3 log's timestamps (ms):
    scan (the plugin's scan, frozen), commit (the plugin's syncfs and commit
    after the images are written), unfreeze_at (from the start of the run),
    kill (from "Unfreezing tasks" into the dead state to the end: the exit of
    the dumped tasks, inside CRIU's frozen time)."""
    marks, out = {}, {}
    for line in (read(path) or "").splitlines():
        if not line.startswith("(") or ")" not in line:
            continue
        try:
            t = float(line[1:line.index(")")]) * 1000
        except ValueError:
            continue
        msg = line[line.index(")") + 2:]
        if "uffdwp: criu: scan gen" in msg:
            out["scan_ms"] = int(msg.rsplit(",", 1)[1].split()[0]) / 1000
        elif msg.startswith("Writing image inventory"):
            marks["inventory"] = t
        elif "uffdwp: criu: committed gen" in msg:
            marks["committed"] = t
        elif msg.startswith("Unfreezing tasks"):
            marks["unfreeze"] = t
        elif msg.startswith("Writing stats"):
            marks["stats"] = t
    if "unfreeze" in marks:
        out["unfreeze_at_ms"] = marks["unfreeze"]
        if "stats" in marks:
            out["after_unfreeze_ms"] = marks["stats"] - marks["unfreeze"]
    if "committed" in marks:
        start = marks.get("inventory", 0)
        if start < marks.get("unfreeze", 0) < marks["committed"]:
            start = marks["unfreeze"]  # pre-dump: pages written after unfreezing
        out["commit_ms"] = marks["committed"] - start
    return out


def dir_usage(d):
    """Bytes on disk (du) and apparent bytes of a directory, and of its pages-*.img."""
    du = size = pages = 0
    for base, _, files in os.walk(d):
        for name in files:
            st = os.lstat(os.path.join(base, name))
            du += st.st_blocks * 512
            size += st.st_size
            if name.startswith("pages-"):
                pages += st.st_size
    return {"du_bytes": du, "bytes": size, "pages_bytes": pages}


def demo_usage(d):
    """A directory's bytes (apparent and du), its page data (pages-*.img, raw;
    uffdwp-pages-*.zst, compressed; data_bytes = both) and the rest."""
    u = {"bytes": 0, "du_bytes": 0, "pages_bytes": 0, "zst_bytes": 0}
    for base, _, files in os.walk(d):
        for name in files:
            st = os.lstat(os.path.join(base, name))
            u["bytes"] += st.st_size
            u["du_bytes"] += st.st_blocks * 512
            if name.startswith("pages-") and name.endswith(".img"):
                u["pages_bytes"] += st.st_size
            elif name.startswith("uffdwp-pages-") and name.endswith(".zst"):
                u["zst_bytes"] += st.st_size
    u["data_bytes"] = u["pages_bytes"] + u["zst_bytes"]
    u["meta_bytes"] = u["bytes"] - u["data_bytes"]
    return u


# ----------------------------------------------------------------- helpers

def sizearg(s):
    s = s.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    return int(float(s.rstrip("KMG")) * mult)


def sizename(b):
    return f"{b >> 30}G" if b >= 1 << 30 and not b % (1 << 30) else f"{b >> 20}M"


def read(path):
    return read_file(path)


def wait_for(pred, what, timeout):
    return _wait_for(pred, what, timeout, error=CannotRun)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_time(pid):
    """The start time of pid (clock ticks since boot), None if it is gone: with
    the pid, it names one process, so that a pid reused later is never killed."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def kill_if_same(pid, start, sig=signal.SIGKILL):
    if pid and start is not None and start_time(pid) == start:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def holder_pid(root):
    s = read(os.path.join(RUN_DIR, f"{os.stat('/proc/self/ns/pid').st_ino}-{root}.lock"))
    try:
        pid = int(s.split()[0]) if s else 0
    except ValueError:
        return 0
    return pid if pid and alive(pid) else 0


def log_tail(path, n=20):
    text = read(path) or "(no log)"
    return "\n".join(text.splitlines()[-n:])


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def common_args(ap, workdir_need=""):
    """The options every CRIU benchmark takes: --criu, --build, --workdir, --out."""
    ap.add_argument("--criu", help="CRIU with criu-patches/ (default: $CRIU, the one make criu "
                    "built, or criu on PATH)")
    ap.add_argument("--build", default=os.environ.get("UFFDWP_BUILD", os.path.join(ROOT, "build")),
                    help="uffdwp's build directory (default build/, or $UFFDWP_BUILD)")
    ap.add_argument("--workdir", default="/var/tmp",
                    help=f"where the images go{workdir_need} (default /var/tmp)")
    ap.add_argument("--out", help="write the results as JSON to this file")


def find_criu(explicit):
    """(path, None) of a CRIU with criu-patches/, or (None, why not)."""
    tried = []
    cands = [explicit] if explicit else \
        [os.environ.get("CRIU"), *CANDIDATES, shutil.which("criu")]
    for c in [c for c in cands if c]:
        if c in [t[0] for t in tried]:
            continue
        if not os.access(c, os.X_OK):
            tried.append((c, "not found"))
            continue
        r = subprocess.run([c, "check", "--feature", "uffd-wp-track"], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
        if r.returncode:
            out = (r.stdout + r.stderr).strip().splitlines()
            tried.append((c, f"check --feature uffd-wp-track: {out[-1] if out else r.returncode}"))
            continue
        with open(c, "rb") as f:
            if HOOKS_MARK not in f.read():
                tried.append((c, "no memory tracking hooks (criu-patches/: "
                                  "mem: take changed pages from a tracking plugin)"))
                continue
        return c, None
    return None, "; ".join(f"{c}: {why}" for c, why in tried) or "no criu anywhere"


class WrongRestore(Exception):
    """A restore brought back memory the workload finds wrong: a real bug."""
