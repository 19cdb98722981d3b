# SPDX-License-Identifier: GPL-2.0
"""Ground truth for `uffdwp snap` (test_snap.py has why): what a snapshot
must hold, read from the stopped process itself, and the chain's pages
compared with it."""
import json
import os
import struct
import subprocess

from helpers import MARKER_SWAP_TYPE, PAGE, UFFDWP, descendants, frozen, uffdwp

ZERO = bytes(PAGE)
SPECIAL = ("[vvar]", "[vvar_vclock]", "[vsyscall]", "[vdso]", "[uprobes]")
SHM_NAMES = ("/dev/zero", "/memfd:", "/SYSV", "/dev/shm/", "[anon_shmem:")


def maps_full(pid):
    """[(start, end, perms, offset, inode, name)] of /proc/PID/maps."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            out.append((lo, hi, parts[1], int(parts[2], 16), int(parts[4]),
                        parts[5].strip() if len(parts) > 5 else ""))
    return out


def _read_exact(f, off, n):
    f.seek(off)
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def shm_pages(pid, lo, hi, pgoff, out):
    """Pages the shared memory file mapped at [lo, hi) holds, by offset, into out[ino]."""
    fd = os.open(f"/proc/{pid}/map_files/{lo:x}-{hi:x}", os.O_RDONLY)
    try:
        ino = os.fstat(fd).st_ino
        pages = out.setdefault(ino, {})
        off, end = pgoff, pgoff + (hi - lo)
        while off < end:
            try:
                d = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break  # ENXIO: no data after off
            h = min(os.lseek(fd, d, os.SEEK_HOLE), end)
            for a in range(d // PAGE * PAGE, h, PAGE):
                if a >= pgoff:
                    pages[a] = os.pread(fd, PAGE, a)
            off = h
    finally:
        os.close(fd)


def truth_of(pid):
    """({addr: page} of pid's own memory, {ino: {offset: page}} of its shared memory)."""
    own, shm = {}, {}
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem, \
            open(f"/proc/{pid}/pagemap", "rb", buffering=0) as pm:
        for lo, hi, perms, pgoff, ino, name in maps_full(pid):
            if name in SPECIAL:
                continue
            if perms[3] == "s":
                if name.startswith(SHM_NAMES):
                    shm_pages(pid, lo, hi, pgoff, shm)
                continue
            n = (hi - lo) // PAGE
            raw = _read_exact(pm, lo // PAGE * 8, n * 8)
            for i, e in enumerate(struct.unpack(f"{len(raw) // 8}Q", raw)):
                present = (e >> 63) & 1
                swapped = (e >> 62) & 1 and (e & 0x1f) != MARKER_SWAP_TYPE
                if not (present or swapped):
                    continue
                # A private file mapping's page that is the file's, not a copy.
                if name.startswith("/") and present and (e >> 61) & 1:
                    continue
                own[lo + i * PAGE] = _read_exact(mem, lo + i * PAGE, PAGE)
    return own, shm


def truth(pids):
    """Ground truth of a set of tasks, read with the tree stopped."""
    tasks, shm = {}, {}
    for p in pids:
        own, s = truth_of(p)
        tasks[p] = own
        for ino, pages in s.items():
            shm.setdefault(ino, {}).update(pages)
    return tasks, shm


# ------------------------------------------------------------------ images

def run(*args, check=True, timeout=60):
    p = subprocess.run([UFFDWP] + [str(a) for a in args], capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and p.returncode:
        raise AssertionError(f"uffdwp {args} exited {p.returncode}: {p.stderr.decode()}")
    return p


def show(d):
    return json.loads(run("--json", "img", "show", d).stdout)


def image_pages(d):
    """{("task"|"shmem", id): {address: page}} of the chain ending at d."""
    out = {}
    for o in show(d)["objects"]:
        addrs = [r["start"] + i * PAGE for r in o["ranges"] for i in range(r["pages"])]
        data = run("img", "read", d, f"--{o['kind']}", o["id"]).stdout if addrs else b""
        assert len(data) == len(addrs) * PAGE
        out[(o["kind"], o["id"])] = {a: data[i * PAGE:(i + 1) * PAGE]
                                     for i, a in enumerate(addrs)}
    return out


def data_pages_in(d, kind, oid, lo, hi, kinds=("data",)):
    """Pages the newest image of d stores (as data, by default) for object
    kind/oid in [lo, hi)."""
    n = 0
    for o in show(d)["objects"]:
        if o["kind"] != kind or o["id"] != oid:
            continue
        for r in o["ranges"]:
            if r["kind"] in kinds:
                s, e = max(r["start"], lo), min(r["start"] + r["pages"] * PAGE, hi)
                n += max(0, (e - s) // PAGE)
    return n


def where(d, kind, oid, a, pid=None):
    """Say what maps a and how the newest image of d lists it, for a failure message."""
    m = [x for x in maps_full(pid) if x[0] <= a < x[1]] if pid else []
    r = [(x["kind"], hex(x["start"]), x["pages"]) for o in show(d)["objects"]
         if o["kind"] == kind and o["id"] == oid for x in o["ranges"]
         if x["start"] <= a < x["start"] + x["pages"] * PAGE]
    return f"mapping {m}, image range {r}"


def compare(d, tasks, shm):
    """The chain at d against the ground truth; returns pages checked."""
    img = image_pages(d)
    checked = 0
    assert sorted(i for k, i in img if k == "task") == sorted(tasks), \
        f"tasks in the image {sorted(i for k, i in img if k == 'task')} != {sorted(tasks)}"
    for pid, own in tasks.items():
        got = img[("task", pid)]
        for a, page in own.items():
            assert a in got, f"{d}: task {pid}: present page {a:#x} missing"
            assert got[a] == page, \
                f"{d}: task {pid}: page {a:#x} differs: {where(d, 'task', pid, a, pid)}"
            checked += 1
        for a, page in got.items():
            if a not in own:
                assert page == ZERO, f"{d}: task {pid}: page {a:#x} listed, not present"
    for ino, pages in shm.items():
        got = img.get(("shmem", ino), {})
        for off, page in pages.items():
            assert off in got, f"{d}: shmem {ino}: page at {off:#x} missing"
            assert got[off] == page, \
                f"{d}: shmem {ino}: page at {off:#x} differs: {where(d, 'shmem', ino, off)}"
            checked += 1
        for off, page in got.items():
            if off not in pages:
                assert page == ZERO, f"{d}: shmem {ino}: page at {off:#x} listed, not held"
    assert not [i for k, i in img if k == "shmem" and i not in shm], "stale shmem object"
    return checked


def verify(d):
    p = run("img", "verify", d, check=False)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()


class Chain:
    """Snapshots of one workload in tmp_path, each checked against ground truth."""

    def __init__(self, w, tmp_path, tree=False):
        self.w, self.tmp, self.tree = w, tmp_path, tree
        self.dirs = []

    def pids(self):
        """The tasks a snapshot holds: zombies have no memory."""
        kids = descendants(self.w.pid) if self.tree else []
        return [self.w.pid] + [p for p in kids if state(p) not in "ZX"]

    def snap(self, delta=True, check=True, name=None, extra=()):
        d = str(self.tmp / (name or f"s{len(self.dirs)}"))
        args = ["snap", "-t", self.w.pid, "-D", d] + (["--tree"] if self.tree else [])
        if delta and self.dirs:
            args += ["--parent", self.dirs[-1]]
        rc, out, err = uffdwp(*args, *extra, check=False)
        if not check:
            return rc, out, err
        assert rc == 0, err
        self.dirs.append(d)
        with frozen(self.w.pid):
            tasks, shm = truth(self.pids())
        self.checked = compare(d, tasks, shm)
        verify(d)
        return out

    @property
    def last(self):
        return self.dirs[-1]


def ino_of(pid, addr):
    for lo, hi, perms, pgoff, ino, name in maps_full(pid):
        if lo <= addr < hi:
            return ino
    raise AssertionError(f"{addr:#x} not mapped in {pid}")


def state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return "X"
    return st[st.rindex(")") + 2]
