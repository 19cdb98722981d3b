# SPDX-License-Identifier: GPL-2.0
"""Shared pieces of the test suite: the build, workloads, ground truth."""
import json
import os
import signal
import struct
import subprocess
import time

BUILD = os.environ.get("UFFDWP_BUILD",
                       os.path.join(os.path.dirname(__file__), "..", "build"))
UFFDWP = os.path.join(BUILD, "uffdwp")
PAGE = 4096


def workload_path(name):
    return os.path.join(BUILD, "test", name)


def uffdwp(*args, json_out=True, check=True, timeout=60, preexec=None):
    """Run the uffdwp command; return (exit code, parsed JSON or text, stderr)."""
    cmd = [UFFDWP] + (["--json"] if json_out else []) + [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, preexec_fn=preexec)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}: {p.stderr}{p.stdout}")
    out = p.stdout
    if json_out and p.stdout.strip():
        out = json.loads(p.stdout)
    return p.returncode, out, p.stderr


class Workload:
    """A memwl process driven over its stdin, one command, one answer."""

    def __init__(self, name="memwl", args=(), preexec=None):
        self.proc = subprocess.Popen([workload_path(name)] + list(args),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1, preexec_fn=preexec)
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "ready", f"workload did not start: {line}"
        self.pid = int(line[1])
        self.children = []

    def cmd(self, line, ok=True):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        ans = self.proc.stdout.readline().split()
        assert ans, f"workload died on '{line}'"
        if ok:
            assert ans[0] == "ok", f"'{line}' -> {' '.join(ans)}"
        return ans[1:]

    def map(self, rid, kind, pages):
        addr, length = self.cmd(f"map {rid} {kind} {pages}")
        return int(addr, 16), int(length)

    def exec_self(self):
        self.proc.stdin.write("exec\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "ready", line

    def fork(self, line="fork"):
        pid = int(self.cmd(line)[0])
        self.children.append(pid)
        return pid

    def stop(self):
        kill_tree(self.pid)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for c in self.children:
            try:
                os.kill(c, signal.SIGKILL)
            except ProcessLookupError:
                pass


def no_rseq():
    """A preexec_fn: glibc registers no rseq area, which the kernel would
    rewrite whenever the thread comes back to user space on another CPU."""
    os.environ["GLIBC_TUNABLES"] = "glibc.pthread.rseq=0"


def no_process():
    """A pid nobody has now."""
    with open("/proc/sys/kernel/pid_max") as f:
        pid = int(f.read()) - 1
    while os.path.exists(f"/proc/{pid}"):
        pid -= 1
    return pid


def descendants(pid):
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def kill_tree(pid):
    for p in [pid] + descendants(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def holder_file(pid, kind):
    """The path of the holder's 'sock', 'lock' or 'log' file for pid."""
    ino = os.stat("/proc/self/ns/pid").st_ino
    return f"/run/uffdwp/{ino}-{pid}.{kind}"


def stop_holder(pid):
    """Stop a holder for pid if one runs; tests call this in finally."""
    subprocess.run([UFFDWP, "track", "stop", "-t", str(pid)], capture_output=True,
                   timeout=30, stdin=subprocess.DEVNULL)


DUMPABLE = ("anon", "file-private", "shmem", "hugetlb")


def read_maps(pid):
    maps = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            name = parts[5].strip() if len(parts) > 5 else ""
            maps.append((lo, hi, parts[1], name))
    return maps


ZERO_PAGE = bytes(PAGE)
MARKER_SWAP_TYPE = 31  # uffd-wp PTE markers: pagemap says "swapped"


def _there(e):
    """A pagemap entry of a page that is present or swapped out; a uffd-wp
    marker on an empty PTE reads as swapped, but there is no page."""
    return (e >> 63) & 1 or ((e >> 62) & 1 and (e & 0x1f) != MARKER_SWAP_TYPE)


def _is_file_private(perms, name):
    return perms[3] == "p" and name.startswith("/") and not name.startswith("/dev/zero")


def snapshot(pid):
    """The private data of pid as the process sees it: {page address: bytes}.

    Pages of anonymous mappings that are there, and every page of shared
    memory mappings, are read through /proc/PID/mem (reads fault nothing in
    as written); absent anonymous pages are zeros. Of private file
    mappings only the pages the process has its own copy of (anonymous
    pages, in pagemap) count: the others are the file's, which is where any
    dumper takes them from. Shared file mappings of regular files and
    [vvar]-like areas are left out, as dumpers do.
    """
    pages = {}
    try:
        mem = open(f"/proc/{pid}/mem", "rb", buffering=0)
        pagemap = open(f"/proc/{pid}/pagemap", "rb", buffering=0)
        maps = read_maps(pid)
    except OSError:
        return pages  # gone, or a zombie: no memory left
    with mem, pagemap:
        for lo, hi, perms, name in maps:
            own = None
            anon = perms[3] == "p" and not name.startswith("/")
            if _is_file_private(perms, name) or anon:
                pagemap.seek(lo // PAGE * 8)
                raw = b""
                while len(raw) < (hi - lo) // PAGE * 8:
                    chunk = pagemap.read((hi - lo) // PAGE * 8 - len(raw))
                    if not chunk:
                        break
                    raw += chunk
                ents = struct.unpack(f"{len(raw) // 8}Q", raw)
                # bit 63 present, 62 swapped, 61 file page or shared anon
                own = {lo + i * PAGE for i, e in enumerate(ents)
                       if _there(e) and (anon or not (e >> 61) & 1)}
            if name in ("[vvar]", "[vvar_vclock]", "[vsyscall]", "[vdso]", "[uprobes]"):
                continue
            if perms[3] == "s" and name.startswith("/") and not (
                    name.startswith("/dev/zero") or name.startswith("/memfd:")
                    or name.startswith("/SYSV") or name.startswith("/dev/shm")):
                continue
            for a in range(lo, hi, PAGE):
                if own is not None and a not in own:
                    # An absent anonymous page reads as zeros; reading it
                    # would fault it in, so say so without touching it.
                    if anon:
                        pages[a] = ZERO_PAGE
                    continue
                try:
                    mem.seek(a)
                    pages[a] = mem.read(PAGE)
                except OSError:
                    pass
    return pages


def in_ranges(ranges, addr):
    """ranges: sorted [[start, end], ...]"""
    lo, hi = 0, len(ranges)
    while lo < hi:
        mid = (lo + hi) // 2
        if ranges[mid][1] <= addr:
            lo = mid + 1
        else:
            hi = mid
    return lo < len(ranges) and ranges[lo][0] <= addr


def check_no_false_negative(before, after, ranges):
    """Every page whose content changed, or that is new, must be dirty.

    Returns (false negatives, false positives, dirty pages).
    """
    fn, fp = [], 0
    ndirty = 0
    for addr, data in after.items():
        dirty = in_ranges(ranges, addr)
        ndirty += dirty
        old = before.get(addr)
        if old != data and not dirty:
            fn.append(addr)
        elif old == data and dirty:
            fp += 1
    return fn, fp, ndirty


def frozen(pid):
    """Context manager: the process tree is stopped inside."""
    class _F:
        def __enter__(self):
            self.pids = [pid] + descendants(pid)
            for p in self.pids:
                os.kill(p, signal.SIGSTOP)
            wait_stopped(self.pids)
            return self

        def __exit__(self, *exc):
            for p in self.pids:
                try:
                    os.kill(p, signal.SIGCONT)
                except ProcessLookupError:
                    pass
    return _F()


def wait_stopped(pids, timeout=5):
    end = time.time() + timeout
    for p in pids:
        while time.time() < end:
            try:
                with open(f"/proc/{p}/stat") as f:
                    st = f.read()
            except OSError:
                break
            if st[st.rindex(")") + 2] in "Tt":
                break
            time.sleep(0.005)


def task_ranges(report, pid):
    for t in report["tasks"]:
        if t["pid"] == pid:
            return t["ranges"]
    return []


# PAGEMAP_SCAN (Linux 6.7): _IOWR('f', 16, struct pm_scan_arg), 96 bytes.
PAGEMAP_SCAN = 0xC0606610
PAGE_IS_WPALLOWED, PAGE_IS_WRITTEN, PAGE_IS_FILE, PAGE_IS_PRESENT, PAGE_IS_SWAPPED = (
    1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4)



def dirty_in(rep, pid, lo, hi):
    """Dirty pages of pid within [lo, hi)."""
    n = 0
    for s, e in task_ranges(rep, pid):
        s, e = max(s, lo), min(e, hi)
        if s < e:
            n += (e - s) // PAGE
    return n

def pagemap_scan(pid, start, end, mask, inverted=0):
    """The regions of [start, end) of pid whose categories match @mask
    (after @inverted), as the kernel's own walk says: [(start, end, cats)].
    Read only: no write-protect flag is given."""
    import ctypes
    import fcntl
    out, nvec = [], 512
    vec = (ctypes.c_uint64 * (3 * nvec))()
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        while start < end:
            arg = (ctypes.c_uint64 * 12)(96, 0, start, end, 0, ctypes.addressof(vec), nvec, 0,
                                         inverted, mask, 0, mask)
            n = fcntl.ioctl(f.fileno(), PAGEMAP_SCAN, arg)
            out += [(vec[3 * i], vec[3 * i + 1], vec[3 * i + 2]) for i in range(n)]
            if arg[4] <= start:
                break
            start = arg[4]  # walk_end
    return out


def read_file(path):
    """The text of @path, or None when it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def wait_for(pred, what, timeout=30, error=AssertionError):
    """Poll @pred every 20 ms until it is true; its value, or @error."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise error(f"timed out after {timeout:.0f} s waiting for {what}")
