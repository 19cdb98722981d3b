# SPDX-License-Identifier: GPL-2.0
"""`uffdwp snap` against ground truth: the memory the process itself sees.

After each snapshot the test stops the tree and reads, page by page, what a
snapshot must hold: every page of the task's own (present, or swapped: not
a uffd-wp marker, which pagemap also calls swapped; in private file
mappings only private copies), through /proc/PID/mem, and the pages each
shared memory file holds within the windows the tree maps, through
/proc/PID/map_files. The chain must give each of those pages back
unchanged (read with `uffdwp img read`), and every page it lists beyond
them must be zeros. The workloads wait on their stdin between commands, so
their memory when the test looks is their memory when the snapshot froze
them; a workload that keeps writing is checked by the shape of what it
writes instead (test_concurrent_writers_consistent).

One writer is the kernel: it stores the CPU a thread runs on into the
thread's rseq area when the thread returns to user space on another CPU,
which a SIGSTOP/SIGCONT may well cause. So the workloads here run with
glibc's rseq registration off, or the test's own stop would change the
memory it compares against.
"""
import json
import os
import random
import signal
import struct
import subprocess
import time

import pytest

from helpers import (PAGE, UFFDWP, frozen, holder_file, no_rseq, uffdwp, wait_stopped,
                     workload_path)
from snap_helpers import (Chain, compare, data_pages_in, image_pages, ino_of, maps_full, show,
                          state, truth, truth_of, verify)

pytestmark = pytest.mark.timeout(180)



# ------------------------------------------------------------ ground truth



# ------------------------------------------------------------------- tests

# kind, pages, whether writes are tracked page by page (an open memfd is not)
KINDS = [
    ("anon", 64, True),
    ("thp", 1024, True),
    ("shmem", 64, True),
    ("memfd-closed", 64, True),
    ("memfd", 64, False),
    ("sysv", 64, True),
    ("file", 64, True),
]


@pytest.mark.parametrize("kind,pages,exact", KINDS, ids=[k[0] for k in KINDS])
def test_chain_over_kinds(qwl, tmp_path, kind, pages, exact, request):
    """A base and five deltas; each equals the memory, each delta stores just
    what was written in between."""
    if kind in ("shmem", "memfd-closed", "memfd", "sysv"):
        request.getfixturevalue("fork_events")
    if kind == "thp":
        request.getfixturevalue("thp")
    rnd = random.Random(kind)
    w = qwl()
    addr, length = w.map(1, kind, pages)
    w.cmd(f"write 1 0 {pages // 2} 1")
    c = Chain(w, tmp_path)
    out = c.snap()
    assert out["mode"] == "full" and out["holder_started"] and out["committed"]
    shared = kind in ("shmem", "memfd-closed", "memfd", "sysv")
    obj = ("shmem", ino_of(w.pid, addr)) if shared else ("task", w.pid)
    lo, hi = (0, length) if shared else (addr, addr + length)
    for i in range(1, 6):
        first = rnd.randrange(pages - 8)
        n = rnd.randrange(1, 8)
        w.cmd(f"write 1 {first} {n} {10 + i}")
        if i == 3:
            w.cmd(f"touch 1 0 {pages}")  # read faults: no data to store
        out = c.snap()
        assert out["mode"] == "delta" and out["committed"], out
        assert out["parent_pages"] > 0
        got = data_pages_in(c.last, obj[0], obj[1], lo, hi)
        if exact:
            assert got == n, f"{kind}: {got} pages stored for {n} written"
        else:
            assert got >= n
    assert len(show(c.last)["objects"]) >= 1
    assert show(c.last)["depth"] == 5


def test_hugetlb_chain(qwl, tmp_path, hugetlb):
    w = qwl()
    addr, length = w.map(1, "hugetlb", 1024)
    w.cmd("write 1 0 1024 1")
    c = Chain(w, tmp_path)
    c.snap()
    w.cmd("write 1 600 1 2")
    c.snap()
    assert 1 <= data_pages_in(c.last, "task", w.pid, addr, addr + length) <= 512


def test_mapping_changes(qwl, tmp_path):
    """Unmap, new map, move, dontneed, grow, replace, PROT_NONE, exec between
    deltas of one chain."""
    w = qwl()
    for rid, kind in enumerate(["anon", "anon", "shmem", "anon", "memfd-closed", "file"]):
        w.map(rid, kind, 32)
        w.cmd(f"write {rid} 0 32 {rid + 1}")
    c = Chain(w, tmp_path)
    c.snap()
    rounds = [
        ["unmap 1", "map 7 anon 16", "write 7 0 16 7"],
        ["move 0", "write 0 1 2 8", "dontneed 2 0 8", "dontneed 3 4 4"],
        ["replace 3", "write 3 0 2 9", "mprotect 0 none", "write 4 5 1 9"],
        ["remap 3 64", "write 3 40 2 10", "shrinkgrow 7 8", "touch 7 8 8", "dontneed 5 0 4"],
        ["mprotect 0 rw", "write 0 0 1 11", "unmap 2", "map 2 sysv 8", "write 2 0 8 11"],
    ]
    for ops in rounds:
        for op in ops:
            if op.startswith("map "):
                _, rid, kind, pages = op.split()
                w.map(int(rid), kind, int(pages))
            else:
                w.cmd(op)
        out = c.snap()
        assert out["mode"] == "delta"
    w.exec_self()
    w.map(1, "anon", 8)
    w.cmd("write 1 0 8 12")
    out = c.snap()
    assert out["mode"] == "delta"
    assert show(c.last)["depth"] == 6


def _fresh_ipc_namespace():
    """No rseq, and an IPC namespace of its own: its first SysV segment gets
    shmid 0, which /proc/PID/maps shows as inode 0."""
    import ctypes
    no_rseq()
    if ctypes.CDLL(None, use_errno=True).unshare(0x08000000):  # CLONE_NEWIPC
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWIPC)")


def test_sysv_segment_with_id_0(wl, tmp_path, fork_events):
    """Regression: test_mapping_changes failed now and then with 'listed,
    not present' for data pages at s5, the round that attaches a SysV
    segment: when it was the first segment since boot (the tests that make
    one before had been skipped), its shmid was 0, maps showed inode 0, and
    a mapping without an inode was taken for private anonymous memory:
    its pages went into the task's object instead of a shared memory
    object. A fresh IPC namespace gives shmid 0 every time."""
    w = wl(preexec=_fresh_ipc_namespace)
    addr, length = w.map(1, "sysv", 8)
    assert [m for m in maps_full(w.pid) if m[0] == addr][0][4] == 0, "shmid is not 0"
    w.map(2, "sysv", 8)
    w.cmd("write 1 0 8 3")
    w.cmd("write 2 0 4 4")
    c = Chain(w, tmp_path)
    c.snap()
    objs = show(c.last)["objects"]
    assert not data_pages_in(c.last, "task", w.pid, addr, addr + length, ("data", "zero"))
    assert len([o for o in objs if o["kind"] == "shmem"]) == 2, objs
    w.cmd("write 1 2 1 5")
    out = c.snap()
    assert out["mode"] == "delta"
    _, st, _ = uffdwp("track", "scan", "-t", w.pid, "--hold")
    notes = [n for t in st["tasks"] for n in t["notes"] if n["start"] == addr]
    # The tracker takes it for shared memory too, not for a new anonymous mapping.
    assert notes and notes[0]["reason"] not in ("new-mapping", "untrackable"), notes


def test_fork_tree(qwl, tmp_path, fork_events):
    w = qwl()
    addr, length = w.map(1, "anon", 64)
    saddr, slen = w.map(2, "shmem", 32)
    w.cmd("write 1 0 64 1")
    w.cmd("write 2 0 32 1")
    c = Chain(w, tmp_path, tree=True)
    c.snap()
    child = w.fork("forkwrite 1 0 2 7")
    out = c.snap()
    assert out["tasks"] == 2
    # The child is new: all of its memory is data; the parent wrote nothing.
    assert data_pages_in(c.last, "task", child, addr, addr + length) == 64
    assert data_pages_in(c.last, "task", w.pid, addr, addr + length) == 0
    w.fork("forkwrite 2 3 2 8")  # a second child writes the shared memory
    w.cmd("write 1 5 1 9")
    out = c.snap()
    assert out["tasks"] == 3
    assert data_pages_in(c.last, "task", w.pid, addr, addr + length) == 1
    assert data_pages_in(c.last, "task", child, addr, addr + length) == 0
    # The new child's own page tables were not protected yet: its windows of
    # shared memory count as written, all of them.
    assert data_pages_in(c.last, "shmem", ino_of(w.pid, saddr), 0, slen) >= 2
    w.cmd("write 2 9 1 10")
    out = c.snap()
    assert data_pages_in(c.last, "shmem", ino_of(w.pid, saddr), 0, slen) == 1
    os.kill(child, signal.SIGKILL)
    time.sleep(0.1)
    out = c.snap()
    assert out["tasks"] == 2
    assert ("task", child) not in image_pages(c.last)


def test_without_tree_only_the_process(qwl, tmp_path):
    w = qwl()
    w.map(1, "anon", 16)
    w.cmd("write 1 0 16 1")
    child = w.fork()
    c = Chain(w, tmp_path)
    out = c.snap()
    assert out["tasks"] == 1
    assert ("task", child) not in image_pages(c.last)


def _slices(pages, nthreads):
    return [(pages * i // nthreads, pages * (i + 1) // nthreads) for i in range(nthreads)]


def test_concurrent_writers_consistent(qwl, tmp_path):
    """Threads keep writing while snapshots are taken. Counting threads store
    1, 2, 3, ... in turn into the pages of their slice, so memory at any one
    instant holds a window of consecutive values per slice: an image with a
    page copied before the freeze and written again after its copy breaks
    the window. A static region must equal memory; a spinning one writes
    random words meanwhile."""
    w = qwl()
    pages, nthreads, spages = 256, 2, 64
    addr, length = w.map(1, "anon", pages)
    w.cmd(f"write 1 0 {pages} 1")
    w.map(2, "anon", 256)
    w.cmd("write 2 0 256 2")
    saddr, slen = w.map(3, "anon", 128)
    w.cmd("write 3 0 128 3")
    shaddr, shlen = w.map(4, "shmem", spages)
    w.cmd(f"write 4 0 {spages} 4")
    ino = ino_of(w.pid, shaddr)
    with frozen(w.pid):
        own, _ = truth_of(w.pid)
        static = {a: own[a] for a in range(saddr, saddr + slen, PAGE)}
    w.cmd(f"count 1 {nthreads}")
    w.cmd("count 4 1")
    w.cmd("spin 2 1")
    time.sleep(0.3)

    def window(pagelist, where):
        vals = [struct.unpack_from("<Q", p)[0] for p in pagelist]
        n, top = len(vals), max(vals)
        assert top > n, "counter did not go round once"
        assert sorted(vals) == list(range(top - n + 1, top + 1)), \
            f"{where} is not one instant: {sorted(vals)[:4]}... top {top}"
        assert all(v % n == i for i, v in enumerate(vals)), where

    dirs, reread = [], 0
    try:
        for i in range(5):
            d = str(tmp_path / f"s{i}")
            args = ["snap", "-t", w.pid, "-D", d] + (["--parent", dirs[-1]] if dirs else [])
            _, out, _ = uffdwp(*args)
            dirs.append(d)
            reread += out["frozen_pages"]
            if i == 0:
                # The static region came from the copy made while running.
                assert out["copied_pages"] >= 128 + pages
            pages_of = image_pages(d)
            img = pages_of[("task", w.pid)]
            for lo, hi in _slices(pages, nthreads):
                window([img[addr + p * PAGE] for p in range(lo, hi)],
                       f"snapshot {i}: slice {lo}-{hi}")
            window([pages_of[("shmem", ino)][p * PAGE] for p in range(spages)],
                   f"snapshot {i}: shared memory")
            for a, page in static.items():
                assert img[a] == page, f"static page {a:#x} differs"
            verify(d)
    finally:
        w.cmd("unspin")
    assert reread >= nthreads, "nothing was written during any copy: the test tests nothing"
    # Quiet again: the next delta equals the memory in full.
    c = Chain(w, tmp_path)
    c.dirs = dirs
    c.snap(name="quiet")


def test_holder_killed_full_without_parent(qwl, tmp_path):
    w = qwl()
    addr, length = w.map(1, "anon", 64)
    w.cmd("write 1 0 64 1")
    c = Chain(w, tmp_path)
    c.snap()
    _, st, _ = uffdwp("track", "status", "-t", w.pid)
    os.kill(st["holder_pid"], signal.SIGKILL)
    time.sleep(0.2)
    w.cmd("write 1 3 2 5")
    rc, out, err = c.snap(check=False)
    assert rc == 0, err
    assert "tracking lost" in err
    assert out["mode"] == "full" and out["tracking_lost"] and out["parent"] is None
    assert out["holder_started"] and out["committed"]
    c.dirs.append(out["dir"])
    s = show(c.last)
    assert s["depth"] == 0 and "parent_id" not in s
    assert not os.path.lexists(os.path.join(c.last, "parent"))
    with frozen(w.pid):
        tasks, shm = truth([w.pid])
    compare(c.last, tasks, shm)
    # Tracking is back: the next one is a delta of the full one.
    w.cmd("write 1 9 1 6")
    out = c.snap()
    assert out["mode"] == "delta"
    assert data_pages_in(c.last, "task", w.pid, addr, addr + length) == 1


def test_wrong_parent_refused(qwl, tmp_path):
    w = qwl()
    w.map(1, "anon", 16)
    w.cmd("write 1 0 16 1")
    c = Chain(w, tmp_path)
    c.snap(name="a")
    c.snap(delta=False, name="b")  # a new base: tracking is now relative to b
    for parent, why in ((c.dirs[0], "not relative"), (str(tmp_path / "nothing"), "parent"),
                        (str(tmp_path), "parent")):
        d = tmp_path / "refused"
        rc, out, err = uffdwp("snap", "-t", w.pid, "-D", d, "--parent", parent,
                              json_out=False, check=False)
        assert rc == 1, err
        assert why in err, err
        assert len(err.strip().splitlines()) <= 2, err
        assert not (d / "uffdwp-index.img").exists()
    # The right one still works.
    w.cmd("write 1 2 1 2")
    out = c.snap()
    assert out["mode"] == "delta"


def test_holder_without_tag_refused(qwl, tmp_path):
    """A holder started by `track start` never committed an image: no delta
    against anything; a full snapshot adopts it."""
    w = qwl()
    w.map(1, "anon", 16)
    w.cmd("write 1 0 16 1")
    c = Chain(w, tmp_path)
    c.snap(name="a")
    uffdwp("track", "stop", "-t", w.pid)
    uffdwp("track", "start", "-t", w.pid)
    rc, out, err = c.snap(check=False)
    assert rc == 1 and "never committed" in err, err
    out = c.snap(delta=False, name="b")
    assert out["mode"] == "full" and not out["holder_started"] and out["committed"]
    w.cmd("write 1 4 1 2")
    out = c.snap()
    assert out["mode"] == "delta"


def test_dir_with_image_refused(qwl, tmp_path):
    w = qwl()
    c = Chain(w, tmp_path)
    c.snap(name="a")
    rc, out, err = uffdwp("snap", "-t", w.pid, "-D", c.last, json_out=False, check=False)
    assert rc == 1 and "already holds an image" in err, err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("why", ["not-a-dir", "threads", "bad-parent", "enospc", "no-write"])
def test_failed_snap_leaves_no_holder(qwl, tmp_path, why):
    """A snapshot that fails leaves the process as it was: untracked if it
    was, no holder files, nothing of the image (the new user's case was
    '-D /tmp/afile' and '--threads 0', which left a holder for an hour)."""
    w = qwl()
    w.map(1, "anon", 256)
    w.cmd("write 1 0 256 1")
    d, extra, mounted = tmp_path / "s", [], None
    if why == "not-a-dir":
        d = tmp_path / "afile"
        d.write_text("x")
    elif why == "threads":
        extra = ["--threads", "0"]
    elif why == "bad-parent":
        (tmp_path / "p").mkdir()
        extra = ["--parent", tmp_path / "p"]
    elif why == "no-write":
        d = tmp_path / "ro" / "s"
        (tmp_path / "ro").mkdir(mode=0o500)
        os.chmod(tmp_path / "ro", 0o500)
        if os.geteuid() == 0:
            # root writes anywhere: a read-only mount then.
            subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs",
                            tmp_path / "ro"], check=True)
            mounted = tmp_path / "ro"
    else:
        mounted = tmp_path / "small"
        mounted.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mounted], check=True)
        d = mounted / "s"
    try:
        rc, out, err = uffdwp("snap", "-t", w.pid, "-D", d, *extra, json_out=False, check=False)
        assert rc in (1, 2), err
        assert err.strip() and "still running" not in err, err
        rc, st, _ = uffdwp("track", "status", "-t", w.pid, check=False)
        assert rc == 3 and st["tracked"] is False, f"{why}: a holder was left: {st}"
        for kind in ("sock", "lock"):
            assert not os.path.exists(holder_file(w.pid, kind))
        if d.is_dir():
            assert not os.listdir(d), os.listdir(d)
    finally:
        if mounted:
            subprocess.run(["umount", mounted], check=True)
    # And nothing keeps the next snapshot from working.
    (tmp_path / "ok").mkdir()
    out = Chain(w, tmp_path / "ok").snap()
    assert out["mode"] == "full" and out["holder_started"]


@pytest.mark.parametrize("pid", ["abc", "0", "999999999"])
def test_bad_pid(built, tmp_path, pid):
    rc, out, err = uffdwp("snap", "-t", pid, "-D", tmp_path / "x", json_out=False,
                          check=False)
    assert rc in (1, 2), err
    assert err.strip() and len(err.strip().splitlines()) <= 2, err
    assert not (tmp_path / "x").exists()


def test_usage(built):
    rc, out, err = uffdwp("snap", "--help", json_out=False)
    assert "--parent" in out and "tracking" in out
    rc, out, err = uffdwp("snap", "-t", "1", json_out=False, check=False)
    assert rc == 2


@pytest.mark.parametrize("where", ["staging", "image"])
def test_enospc_nothing_lost(qwl, tmp_path, where):
    """The disk fills up while a delta is written (the staging file of the
    copy, or the image itself): an error, nothing committed, no image; the
    next delta stores every page written since the parent."""
    w = qwl()
    pages = 2048
    addr, length = w.map(1, "anon", pages)
    w.cmd(f"write 1 0 {pages} 1")
    c = Chain(w, tmp_path)
    c.snap(name="base")
    w.cmd(f"write 1 0 {pages} 2")
    small = tmp_path / "small"
    small.mkdir()
    # Room for the raw staging copy but not the image, or for nothing.
    size = pages * PAGE + (256 << 10) if where == "image" else 256 << 10
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", small], check=True)
    try:
        d = small / "delta"
        rc, out, err = uffdwp("snap", "-t", w.pid, "-D", d, "--parent", c.last,
                              json_out=False, check=False)
        assert rc == 1, err
        assert "No space left" in err, err
        assert ("staging" in err) == (where == "staging"), err
        assert not (d / "uffdwp-index.img").exists()
        assert not [f for f in os.listdir(small) if f != "delta"] and \
            (not d.exists() or not os.listdir(d)), os.listdir(small)
    finally:
        subprocess.run(["umount", small], check=True)
    out = c.snap(name="after")
    assert out["mode"] == "delta"
    assert data_pages_in(c.last, "task", w.pid, addr, addr + length) == pages


def test_stopped_task_left_stopped(qwl, tmp_path):
    w = qwl()
    w.map(1, "anon", 16)
    w.cmd("write 1 0 16 1")
    os.kill(w.pid, signal.SIGSTOP)
    wait_stopped([w.pid])
    try:
        uffdwp("snap", "-t", w.pid, "-D", tmp_path / "a")
        assert state(w.pid) == "T"
        tasks, shm = truth([w.pid])
        compare(str(tmp_path / "a"), tasks, shm)
    finally:
        os.kill(w.pid, signal.SIGCONT)
    c = Chain(w, tmp_path)
    c.dirs.append(str(tmp_path / "a"))
    c.snap()
    time.sleep(0.05)
    assert state(w.pid) in "SR", state(w.pid)
    w.cmd("write 1 1 1 2")  # and it still answers


def test_swapped_pages(qwl, tmp_path, swap):
    """Swapped-out pages are in the image; paged out between snapshots
    without a write, they stay in parent."""
    w = qwl()
    addr, length = w.map(1, "anon", 256)
    w.cmd("write 1 0 256 1")
    w.cmd("pageout 1 0 128")
    c = Chain(w, tmp_path)
    c.snap()
    w.cmd("pageout 1 0 256")
    w.cmd("write 1 200 1 2")
    c.snap()
    assert data_pages_in(c.last, "task", w.pid, addr, addr + length) == 1


def test_text_summary_and_progress(qwl, tmp_path):
    w = qwl()
    w.map(1, "anon", 64)
    w.cmd("write 1 0 64 1")
    d = tmp_path / "a"
    rc, out, err = uffdwp("-v", "snap", "-t", w.pid, "-D", d, json_out=False)
    assert "full snapshot" in out and "stopped for" in out and "ratio" in out, out
    assert "tracking started" in out
    w.cmd("write 1 0 1 2")
    rc, out, err = uffdwp("snap", "-t", w.pid, "-D", tmp_path / "b", "--parent", d,
                          "--level", "3", "--frame-size", "16K", "--threads", "2",
                          json_out=False)
    assert "delta snapshot" in out and "in parent" in out, out
    rc, js, err = uffdwp("snap", "-t", w.pid, "-D", tmp_path / "c", "--parent",
                         tmp_path / "b", "--json", json_out=False)
    js = json.loads(js)
    for k in ("pages", "data_pages", "zero_pages", "parent_pages", "bytes_written", "ratio",
              "frozen_ms", "total_ms"):
        assert k in js, k
    assert show(tmp_path / "b")["frame_size"] == 16384


NR_PIDFD_GETFD, ENOSYS = 438, 38  # x86-64


def test_untracked_copied_while_stopped(qwl, tmp_path):
    """When no holder can be started (here pidfd_getfd is refused to uffdwp,
    as some container runtimes do), the snapshot is still whole and
    consistent: every page is read while the tree is stopped."""
    w = qwl()
    pages = 64
    addr, length = w.map(1, "anon", pages)
    w.cmd(f"write 1 0 {pages} 1")
    saddr, slen = w.map(2, "anon", 32)
    w.cmd("write 2 0 32 2")
    with frozen(w.pid):
        own, _ = truth_of(w.pid)
    w.cmd("count 1 1")
    time.sleep(0.1)
    d = str(tmp_path / "a")
    try:
        p = subprocess.run([workload_path("seccomp_deny"), str(ENOSYS), str(NR_PIDFD_GETFD),
                            UFFDWP, "--json", "snap", "-t", str(w.pid), "-D", d],
                           capture_output=True, text=True, timeout=60)
    finally:
        w.cmd("unspin")
    assert p.returncode == 0, p.stderr
    assert "cannot track" in p.stderr
    out = json.loads(p.stdout)
    assert not out["tracked"] and not out["committed"] and not out["holder_started"]
    assert out["copied_pages"] == 0
    assert out["frozen_pages"] == out["data_pages"] + out["zero_pages"]
    rc, _, _ = uffdwp("track", "status", "-t", w.pid, check=False)
    assert rc == 3, "a holder runs"
    img = image_pages(d)[("task", w.pid)]
    vals = [struct.unpack_from("<Q", img[addr + i * PAGE])[0] for i in range(pages)]
    top = max(vals)
    assert sorted(vals) == list(range(top - pages + 1, top + 1)), "not one instant"
    for a in range(saddr, saddr + slen, PAGE):
        assert img[a] == own[a]
    verify(d)


def test_commit_by_another_client_refuses_delta(wl, tmp_path):
    """A plain 'track scan' commits without a tag: the next snapshot delta
    must not pretend to be relative to the parent."""
    w = wl()
    w.map(1, "anon", 32)
    w.cmd("write 1 0 32 1")
    base = tmp_path / "base"
    uffdwp("snap", "-t", w.pid, "-D", base)
    w.cmd("write 1 3 1 2")
    uffdwp("track", "scan", "-t", w.pid)
    rc, out, err = uffdwp("snap", "-t", w.pid, "-D", tmp_path / "d1", "--parent", base,
                          check=False)
    assert rc != 0 and err.strip()
