# SPDX-License-Identifier: GPL-2.0
"""CRIU with criu-patches/ and the uffdwp plugin, end to end.

A criu_wl tree (test/workloads/criu_wl.c) runs in its own PID namespace,
gets 0..3 pre-dumps with --uffd-wp-track, each followed by a step that
rewrites part of its memory, then a dump; the restored tree checks every
page itself. test_shared_anon does the same with a shm_wl tree
(test/workloads/shm_wl.c), whose memory is all anonymous shared memory.
CRIU is $CRIU or `criu` on PATH; without one that has the patches (and
without root) everything here skips, saying what is missing.
"""
import os
import shutil
import signal
import struct
import subprocess
import time

import pytest

from helpers import (BUILD, UFFDWP, kill_tree, read_file, stop_holder, uffdwp, wait_for,
                     workload_path)
from img_helpers import pb_fields

pytestmark = pytest.mark.timeout(180)

PLUGIN = os.path.join(BUILD, "uffdwp_plugin.so")
RUN_DIR = "/run/uffdwp"
PAGES = 2048  # per region: 8 MiB each of anon, thp, sparse, shared, file


def _criu_path():
    c = os.environ.get("CRIU") or shutil.which("criu")
    if not c:
        pytest.skip("no CRIU: set $CRIU or put criu on PATH (a CRIU with criu-patches/ applied)")
    if not os.access(c, os.X_OK):
        pytest.skip(f"CRIU {c} is not executable")
    return c


@pytest.fixture(scope="session")
def criu(tracking):
    """Path of a CRIU that has the series, or a skip naming what is missing."""
    c = _criu_path()
    r = subprocess.run([c, "check", "--feature", "uffd-wp-track"], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    if r.returncode:
        out = (r.stdout + r.stderr).strip().splitlines()
        pytest.skip(f"{c} check --feature uffd-wp-track: "
                    f"{out[-1] if out else 'exit %d' % r.returncode}")
    with open(c, "rb") as f:
        if b"needs a plugin that tracks memory" not in f.read():
            pytest.skip(f"{c} has the uffd-wp-track option but not the memory tracking "
                        "hooks (criu-patches/, \"plugin: add memory tracking hooks\")")
    if not os.path.exists(PLUGIN):
        pytest.skip(f"{PLUGIN} not built: make CRIU_INCLUDE=<include/criu of that CRIU>")
    for tool in ("unshare", "setsid"):
        if not shutil.which(tool):
            pytest.skip(f"no {tool} on PATH")
    return c


@pytest.fixture
def plugdir(tmp_path):
    """A plugin directory holding only our plugin (-L): CRIU loads every .so in it."""
    d = tmp_path / "plugins"
    d.mkdir()
    shutil.copy(PLUGIN, d / "uffdwp_plugin.so")
    return str(d)


_read = read_file
_wait_for = wait_for


def _log_tail(path, n=25):
    text = _read(path) or "(no log)"
    return "\n".join(text.splitlines()[-n:])


def _holder_pid(root):
    s = _read(os.path.join(RUN_DIR, f"{os.stat('/proc/self/ns/pid').st_ino}-{root}.lock"))
    try:
        pid = int(s.split()[0]) if s else 0
    except ValueError:
        return 0
    # The lock file outlives its holder: only a live holder counts.
    return pid if pid and os.path.exists(f"/proc/{pid}") else 0


class Tree:
    """A criu_wl tree in a new PID namespace, and everything made from it."""

    def __init__(self, criu, plugdir, tmp_path, pages=PAGES, workload="criu_wl", args=()):
        self.criu = criu
        self.plugdir = plugdir
        self.base = tmp_path
        self.wl = tmp_path / "wl"
        self.wl.mkdir()
        self.step = 0
        self.restored = None
        self.dumps = []
        self.proc = subprocess.Popen(
            ["unshare", "-pf", "setsid", workload_path(workload), str(self.wl), str(pages),
             *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ready = _wait_for(lambda: _read(self.wl / "ready"), f"{workload} ready")
        self.root, self.child = (int(x) for x in ready.split())

    def do_step(self):
        self.step += 1
        os.kill(self.restored or self.root, signal.SIGUSR1)
        _wait_for(lambda: (_read(self.wl / "step") or "").strip() == str(self.step),
                  f"step {self.step}")

    def run_criu(self, action, name, parent=None, extra=(), check=True):
        d = self.base / name
        d.mkdir()
        cmd = [self.criu, action, "-t", str(self.root), "-D", str(d), "-L", self.plugdir,
               "-v4", "-o", f"{action}.log", "--uffd-wp-track"]
        if parent:
            cmd += ["--prev-images-dir", f"../{parent}"]
        cmd += list(extra)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        log = d / f"{action}.log"
        if check:
            assert r.returncode == 0, f"{' '.join(cmd)}: exit {r.returncode}\n{_log_tail(log)}"
        self.dumps.append(d)
        return r, d, _read(log) or ""

    def restore(self, name):
        d = self.base / name
        pidfile = self.base / "restored.pid"
        cmd = [self.criu, "restore", "-D", str(d), "-d", "--pidfile", str(pidfile),
               "-v4", "-o", "restore.log"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 0, f"restore: exit {r.returncode}\n{_log_tail(d / 'restore.log')}"
        self.restored = int(_read(pidfile))

    def verify(self, pid):
        """Ask the tree at @pid to check its memory; returns both answers."""
        os.kill(pid, signal.SIGUSR2)
        parent = _wait_for(lambda: _read(self.wl / "verify"), "verify")
        child = _read(self.wl / "verify.child")
        return parent.strip(), (child or "").strip()

    def close(self):
        for pid in (self.restored, self.root, self.child):
            if pid:
                stop_holder(pid)
                kill_tree(pid)
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)


@pytest.fixture
def tree(criu, plugdir, tmp_path):
    made = []

    def make(**kw):
        t = Tree(criu, plugdir, tmp_path, **kw)
        made.append(t)
        return t
    yield make
    for t in made:
        t.close()


def _pages_bytes(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
               if f.startswith("pages-"))


def _shm_stats(d):
    """Shared memory pages of the dump in @d, from its stats-dump:
    (scanned, taken from the parent, written)."""
    with open(os.path.join(d, "stats-dump"), "rb") as f:
        b = f.read()
    # IMG_SERVICE_MAGIC, STATS_MAGIC, then one size-prefixed StatsEntry.
    n = struct.unpack_from("<I", b, 8)[0]
    dump = pb_fields(pb_fields(b[12:12 + n])[1][0])
    return tuple(dump.get(k, [0])[0] for k in (12, 13, 14))


def _migrate(t, predumps, kill_holder_before=()):
    """@predumps pre-dumps with a step after each, then dump; returns the dump dir."""
    parent = None
    for i in range(predumps):
        if i in kill_holder_before:
            h = _holder_pid(t.root)
            assert h, "no holder to kill"
            os.kill(h, signal.SIGKILL)
            _wait_for(lambda: not _holder_pid(t.root), "holder gone")
        _, d, log = t.run_criu("pre-dump", f"pre{i}", parent)
        parent = d.name
        t.do_step()
    if predumps in kill_holder_before:
        h = _holder_pid(t.root)
        assert h, "no holder to kill"
        os.kill(h, signal.SIGKILL)
        _wait_for(lambda: not _holder_pid(t.root), "holder gone")
    _, d, log = t.run_criu("dump", "dump", parent)
    return d, log


def _restore_and_verify(t, d):
    t.restore(d.name)
    parent, child = t.verify(t.restored)
    assert parent == f"ok {t.step}" and child == f"ok {t.step}", (parent, child)


@pytest.mark.parametrize("predumps", [0, 1, 2, 3])
def test_migrate(tree, predumps):
    t = tree()
    d, log = _migrate(t, predumps)
    if predumps:
        # The dump took only what the last step wrote from the tracker.
        assert "uffdwp: criu: scan gen" in log
        # The tasks are killed after it: no commit, no sync while frozen.
        assert "not committed" in log and "committed gen" not in log
        assert not (d / "uffdwp-track.id").exists()
    _restore_and_verify(t, d)


def test_migrate_read_mode(tree):
    """--pre-dump-mode read: pages copied with process_vm_readv after the tasks
    run again, through one shared pipe (the series' "page-pipe: one pipe for
    all buffers of a read-mode pre-dump")."""
    t = tree()
    parent = None
    for i in range(2):
        _, d, log = t.run_criu("pre-dump", f"pre{i}", parent, extra=("--pre-dump-mode", "read"))
        parent = d.name
        t.do_step()
    _, d, log = t.run_criu("dump", "dump", parent)
    assert "uffdwp: criu: scan gen" in log
    _restore_and_verify(t, d)


def test_deltas_are_small(tree, fork_events):
    """Each pre-dump after the first holds about what one step wrote."""
    t = tree()
    d, _ = _migrate(t, 3)
    sizes = [_pages_bytes(x) for x in t.dumps]
    full = sizes[0]
    # A step rewrites a quarter of anon and thp, 1/16 of file, 1/16 of
    # sparse in the parent, a quarter of anon in the child: about 7 of 36 MiB.
    # The first delta also has the tracker's one-time false positives: it
    # reports each marker in a private file mapping once, and the child's
    # copy of the 8 MiB file mapping is all markers. Shared anonymous
    # memory is a delta too: the parent rewrites 1/8 of it a step.
    assert all(s < full for s in sizes[1:]), sizes
    assert sizes[2] < full * 0.3 and sizes[3] < full * 0.3, sizes
    assert all(_shm_stats(x)[2] == PAGES // 8 for x in t.dumps[1:])
    _restore_and_verify(t, d)


SHM_PAGES = 1024  # per region of shm_wl: 4 MiB each of main, gone, sparse


def _shm_changed(t, n=SHM_PAGES):
    """Pages of shm_wl's regions that its step @t rewrites (writer() there)."""
    main = sum((i + t) % 16 in (0, 4, 8, 12) or (t == 2 and (i + t) % 16 == 2)
               for i in range(n))
    gone = sum((i + t) % 16 == 0 or (t == 1 and (i + t) % 16 == 8) for i in range(n))
    sparse = sum((i + t) % 32 == 0 or (t == 1 and (i + t) % 32 == 9) for i in range(n))
    return main + gone + sparse


@pytest.mark.parametrize("predumps", [0, 1, 2, 3])
def test_shared_anon(tree, predumps, fork_events):
    """Anonymous shared memory of a parent and its child, written by both,
    through /proc/self/mem, by a child that drops its written PTEs or unmaps
    its whole mapping afterwards, by a grandchild that exits before the next
    pre-dump, holes punched with MADV_REMOVE: each delta holds what changed and nothing that did not, and
    the restored tree checks every page."""
    t = tree(workload="shm_wl", pages=SHM_PAGES)
    d, _ = _migrate(t, predumps)
    stats = [_shm_stats(x) for x in t.dumps]
    full = stats[0][2]
    assert full >= 2 * SHM_PAGES, stats
    for k, (scanned, parent, written) in enumerate(stats[1:], 1):
        # Image k holds what step k changed; a page never counts twice.
        assert written + parent <= scanned, stats
        assert written >= _shm_changed(k), stats
        assert written < full, stats
    if predumps == 3:
        # Step 3 only writes pages (step 1 unmapped a window, step 2 had a
        # grandchild come and go, both of which count whole): no page that
        # did not change is dumped again.
        scanned, parent, written = stats[-1]
        assert written <= _shm_changed(3) * 9 // 8, stats
        assert parent >= SHM_PAGES, stats
    _restore_and_verify(t, d)


@pytest.mark.parametrize("mode", ["splice", "read"])
def test_shared_anon_written_while_copied(tree, mode):
    """Shared memory written all the time, also while a pre-dump copies it
    after the tasks run again (the series' "shmem: under --uffd-wp-track,
    pre-dump shared memory after the tasks run again"): every write since a page was
    copied must reach a later image. The child's thread checks each page
    against its private record of the last value it stored there."""
    t = tree(workload="shm_wl", pages=SHM_PAGES, args=("spin",))
    parent = None
    for i in range(3):
        _, d, log = t.run_criu("pre-dump", f"pre{i}", parent,
                               extra=("--pre-dump-mode", mode))
        parent = d.name
        # The copy happens after the tasks run again: CRIU says so.
        assert "Pre-dumping tasks' memory" in log
        t.do_step()
    _, d, log = t.run_criu("dump", "dump", parent)
    _restore_and_verify(t, d)


@pytest.mark.parametrize("when", [1, 2], ids=["before-predump2", "before-dump"])
def test_holder_killed(tree, when):
    """Tracking lost between iterations: the next one dumps whole, and the result is right."""
    t = tree()
    d, log = _migrate(t, 2, kill_holder_before=(when,))
    if when == 2:
        assert "no holder tracks" in log
    _restore_and_verify(t, d)


def test_wrong_parent(tree):
    """A dump on top of older images than the ones tracking is relative to is a full one."""
    t = tree()
    t.run_criu("pre-dump", "pre0")
    t.do_step()
    t.run_criu("pre-dump", "pre1", "pre0")
    t.do_step()
    _, d, log = t.run_criu("dump", "dump", "pre0")  # skips pre1
    assert "parent images are not the ones tracking" in log
    _restore_and_verify(t, d)


@pytest.fixture
def tiny_fs(tmp_path):
    """A 1 MiB tmpfs at tmp_path/bad: images written there run out of space."""
    d = tmp_path / "bad"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs: {r.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_failed_predump_keeps_writes(tree, tiny_fs):
    """A pre-dump that fails after its scan re-protected the pages must not lose them."""
    t = tree()
    t.run_criu("pre-dump", "pre0")
    t.do_step()
    # The delta does not fit: the pre-dump fails while writing, after the scan.
    # Its log goes elsewhere (-W): on the full filesystem it would be cut short.
    work = t.base / "tiny-work"
    work.mkdir()
    cmd = [t.criu, "pre-dump", "-t", str(t.root), "-D", str(tiny_fs), "-W", str(work),
           "-L", t.plugdir, "-v4", "-o", "pre-dump.log", "--uffd-wp-track",
           "--prev-images-dir", "../pre0"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    log = _read(work / "pre-dump.log") or ""
    assert r.returncode != 0, "pre-dump into 1 MiB succeeded"
    assert "uffdwp: criu: scan gen" in log and "stays pending" in log, _log_tail(
        work / "pre-dump.log")
    t.run_criu("pre-dump", "pre1", "pre0")
    t.do_step()
    _, d, _ = t.run_criu("dump", "dump", "pre1")
    _restore_and_verify(t, d)


@pytest.fixture
def failing_fs(tmp_path):
    """ext4 (no journal) on a loop device whose 256 MiB backing file sits on a
    4 MiB tmpfs: writes go into the page cache, and writing them back fails
    once the tmpfs is full, as on a failing or thin-provisioned disk."""
    back, mnt = tmp_path / "back", tmp_path / "failing"
    back.mkdir()
    mnt.mkdir()
    undo = []

    def run(*cmd):
        r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if r.returncode:
            pytest.skip(f"cannot set up a failing file system: {' '.join(cmd)}: "
                        f"{(r.stderr or r.stdout).strip()}")
        return r.stdout.strip()
    try:
        run("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(back))
        undo.append(("umount", "-l", str(back)))
        run("truncate", "-s", "256M", str(back / "disk"))
        loop = run("losetup", "--find", "--show", str(back / "disk"))
        undo.append(("losetup", "-d", loop))
        run("mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-E", "lazy_itable_init=1", loop)
        run("mount", "-o", "errors=continue", loop, str(mnt))
        undo.append(("umount", "-l", str(mnt)))
        yield mnt
    finally:
        for cmd in reversed(undo):
            subprocess.run(cmd, capture_output=True)


def test_images_that_cannot_be_synced(tree, failing_fs):
    """The holder syncs a run's images after the tasks run again. When that
    fails (writeback of the images fails), the next run must not count on
    them: it takes all memory and says why, and `uffdwp track status`
    shows the error."""
    t = tree()
    t.run_criu("pre-dump", "pre0")
    t.do_step()
    bad = failing_fs / "pre1"
    bad.mkdir()
    cmd = [t.criu, "pre-dump", "-t", str(t.root), "-D", str(bad), "-W", str(t.base),
           "-L", t.plugdir, "-v4", "-o", "pre1.log", "--uffd-wp-track",
           "--prev-images-dir", os.path.relpath(t.base / "pre0", bad)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    # CRIU never syncs its images: the pre-dump itself succeeds.
    assert r.returncode == 0, _log_tail(t.base / "pre1.log")
    rc, st, err = uffdwp("track", "status", "-t", t.root, check=False)
    assert rc == 0 and st["sync_error"] != 0, (rc, st, err)
    t.do_step()
    d = t.base / "dump"
    d.mkdir()
    cmd = [t.criu, "dump", "-t", str(t.root), "-D", str(d), "-L", t.plugdir, "-v4",
           "-o", "dump.log", "--uffd-wp-track", "--prev-images-dir", os.path.relpath(bad, d)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    log = _read(d / "dump.log") or ""
    assert r.returncode == 0, _log_tail(d / "dump.log")
    assert "could not be synced" in log and "counts as written" in log, _log_tail(d / "dump.log")
    _restore_and_verify(t, d)


def test_refused_without_plugin(criu, tree, tmp_path):
    t = tree()
    empty = tmp_path / "noplugins"
    empty.mkdir()
    t.plugdir = str(empty)
    r, _, log = t.run_criu("pre-dump", "pre0", check=False)
    assert r.returncode != 0
    assert "--uffd-wp-track needs a plugin that tracks memory" in log
    r, _, log = t.run_criu("dump", "dump", check=False)
    assert r.returncode != 0
    assert "--uffd-wp-track needs a plugin that tracks memory" in log
    # Refused before touching the tasks: the tree runs on and is intact.
    t.do_step()
    assert t.verify(t.root) == (f"ok {t.step}", f"ok {t.step}")


def test_predump_without_tracking(criu, tree, tmp_path):
    """Without soft-dirty and without the option, pre-dump fails cleanly (no BUG)."""
    t = tree()
    d = tmp_path / "plain"
    d.mkdir()
    r = subprocess.run([criu, "pre-dump", "-t", str(t.root), "-D", str(d), "-L", t.plugdir,
                        "-o", "pre-dump.log"], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    log = _read(d / "pre-dump.log") or ""
    if r.returncode == 0:
        pytest.skip("this kernel has soft-dirty: pre-dump works without the option")
    assert r.returncode == 1, log
    assert "BUG" not in log
    assert "Pre-dump needs memory change tracking" in log


def test_abandoned_migration(tree):
    """Pre-dumps, then no dump: `uffdwp track stop` ends tracking, the tree runs on."""
    t = tree()
    t.run_criu("pre-dump", "pre0")
    t.do_step()
    t.run_criu("pre-dump", "pre1", "pre0")
    assert _holder_pid(t.root)
    r = subprocess.run([UFFDWP, "track", "stop", "-t", str(t.root), "--recollapse"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    _wait_for(lambda: not _holder_pid(t.root), "holder gone")
    t.do_step()
    assert t.verify(t.root) == (f"ok {t.step}", f"ok {t.step}")


def test_leave_running(tree):
    """dump -R keeps tracking: a later dump on top of it is incremental and right."""
    t = tree()
    t.run_criu("pre-dump", "pre0")
    t.do_step()
    _, d1, log = t.run_criu("dump", "snap1", "pre0", extra=("--leave-running",))
    assert "uffdwp: criu: committed gen" in log
    assert (d1 / "uffdwp-track.id").exists()
    t.do_step()
    _, d2, log = t.run_criu("dump", "dump", "snap1")
    assert "parent images are not the ones" not in log
    assert _pages_bytes(d2) < _pages_bytes(t.dumps[0]) * 0.6
    _restore_and_verify(t, d2)


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_page_server(tree):
    """Pages through a page server started with --uffd-wp-track (it writes the holes)."""
    t = tree()
    parent = None
    for name in ("pre0", "pre1", "dump"):
        d = t.base / name
        port = _free_port()
        srv = [t.criu, "page-server", "-D", str(d), "--port", str(port), "--uffd-wp-track",
               "-d", "-o", "page-server.log"]
        if parent:
            srv += ["--prev-images-dir", f"../{parent}"]
        d.mkdir()
        r = subprocess.run(srv, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        cmd = [t.criu, "dump" if name == "dump" else "pre-dump", "-t", str(t.root), "-D", str(d),
               "-L", t.plugdir, "-v4", "-o", "criu.log", "--uffd-wp-track", "--page-server",
               "--address", "127.0.0.1", "--port", str(port)]
        if parent:
            cmd += ["--prev-images-dir", f"../{parent}"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 0, _log_tail(d / "criu.log") + _log_tail(d / "page-server.log")
        if parent:
            assert "parent images are not the ones" not in (_read(d / "criu.log") or "")
        parent = name
        if name != "dump":
            t.do_step()
    _restore_and_verify(t, t.base / "dump")


def _kill_criu_at(t, action, name, parent, point):
    """Run `criu action` with the plugin's fault injection set to @point
    (UFFDWP_CRIU_FAULT): CRIU is SIGKILLed exactly there. Returns the log."""
    d = t.base / name
    d.mkdir()
    cmd = [t.criu, action, "-t", str(t.root), "-D", str(d), "-L", t.plugdir,
           "-v4", "-o", "criu.log", "--uffd-wp-track"]
    if parent:
        cmd += ["--prev-images-dir", f"../{parent}"]
    env = dict(os.environ, UFFDWP_CRIU_FAULT=point)
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=env)
    try:
        rc = p.wait(timeout=60)
        log = _read(d / "criu.log") or ""
        assert rc == -signal.SIGKILL and f"CRIU killed at {point}" in log, \
            f"{action} was not killed at {point} (rc {rc})\n{_log_tail(d / 'criu.log')}"
    finally:
        p.kill()
        p.wait(timeout=30)
    return log


def _task_state(pid):
    """The fds and mappings of a task, minus what a killed CRIU leaves by
    itself: its parasite blob stays mapped (plain CRIU does the same)."""
    fds = []
    for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            fds.append(f"{fd} -> {os.readlink(f'/proc/{pid}/fd/{fd}')}")
        except OSError:
            fds.append(fd)
    with open(f"/proc/{pid}/maps") as f:
        maps = [l for l in f if "/memfd:CRIUMFD" not in l]
    return fds, maps


def _uffd_wp_vmas(pid):
    with open(f"/proc/{pid}/smaps") as f:
        return sum(1 for l in f if l.startswith("VmFlags:") and " uw" in l)


# (the run that is killed, the plugin's fault point where it is killed; a
# kill after a log line raced with CRIU and with the syscalls it injects)
KILL_POINTS = {
    "predump0-track-task": ("pre0", "track-task"),
    "predump0-adopted": ("pre0", "adopted"),
    "predump1-after-scan": ("pre1", "after-scan"),
    "predump1-running": ("pre1", "finish"),
    "dump-after-scan": ("dump", "after-scan"),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_criu_killed(tree, point):
    """CRIU killed in the middle of a pre-dump or the dump: the tree runs on
    with nothing of ours left in it (no fd, no mapping), and the migration
    started again from the last good images loses no write."""
    name, where = KILL_POINTS[point]
    t = tree()
    before = {pid: _task_state(pid) for pid in (t.root, t.child)}
    parent = None
    if name != "pre0":
        t.run_criu("pre-dump", "pre0")
        parent = "pre0"
        t.do_step()
    _kill_criu_at(t, "pre-dump" if name.startswith("pre") else "dump", "killed",
                  parent, where)
    for pid in (t.root, t.child):
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        assert state not in "tT", f"task {pid} left stopped ({state})"
        # A parasite that CRIU's death caught in the middle of a command
        # closes its socket and CRIU's log only when it sees the socket end.
        deadline = time.monotonic() + 10
        while _task_state(pid) != before[pid] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _task_state(pid) == before[pid], f"task {pid}: fds or mappings left behind"
    # It runs and writes (the restored tree checks all of it below; the
    # workload exits once it has checked).
    t.do_step()
    # Start again from the last good images: what the killed run scanned
    # and re-protected is still owed to the next one.
    if parent:
        t.run_criu("pre-dump", "again", parent)
        parent = "again"
        t.do_step()
    _, d, _ = t.run_criu("dump", "dump", parent)
    _restore_and_verify(t, d)


def test_criu_killed_then_abandoned(tree):
    """A pre-dump killed after its scan, then the migration given up: `uffdwp
    track stop` leaves no holder, no file in /run/uffdwp and no protection."""
    t = tree()
    t.run_criu("pre-dump", "pre0")
    t.do_step()
    _kill_criu_at(t, "pre-dump", "killed", "pre0", "after-scan")
    holder = _holder_pid(t.root)
    assert holder, "the holder must outlive a killed CRIU (it keeps what was scanned)"
    assert _uffd_wp_vmas(t.root)
    r = subprocess.run([UFFDWP, "track", "stop", "-t", str(t.root)], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    _wait_for(lambda: not os.path.exists(f"/proc/{holder}"), "holder gone")
    for pid in (t.root, t.child):
        assert _uffd_wp_vmas(pid) == 0, f"task {pid} still has uffd-wp mappings"
    ino = os.stat("/proc/self/ns/pid").st_ino
    left = [f for f in os.listdir(RUN_DIR) if f.startswith(f"{ino}-{t.root}.")
            and not f.endswith(".log")]
    assert not left, f"left in {RUN_DIR}: {left}"
    t.do_step()
    assert t.verify(t.root) == (f"ok {t.step}", f"ok {t.step}")


def test_criu_killed_tree_gone(tree):
    """A pre-dump killed after its scan, then the tree killed: the holder
    exits by itself and removes its socket and lock."""
    t = tree()
    t.run_criu("pre-dump", "pre0")
    t.do_step()
    _kill_criu_at(t, "pre-dump", "killed", "pre0", "after-scan")
    holder = _holder_pid(t.root)
    assert holder
    root = t.root
    kill_tree(root)
    _wait_for(lambda: not os.path.exists(f"/proc/{holder}"), "holder gone with its tree")
    ino = os.stat("/proc/self/ns/pid").st_ino
    left = [f for f in os.listdir(RUN_DIR) if f.startswith(f"{ino}-{root}.")
            and not f.endswith(".log")]
    assert not left, f"left in {RUN_DIR}: {left}"




def test_kerndat_cache_kept_for_this_boot(criu, tmp_path):
    """CRIU keeps its kernel-feature cache also where /run is not a tmpfs (it is ext4 on
    some machines), tied to this boot's id: the second run loads it, and a cache from
    another boot is dropped and made again. CRIU runs in a mount namespace whose /run
    is a directory of this test (on the tests' filesystem, ext4 here): the machine's
    cache is not touched, and other CRIU runs on the machine cannot change this one."""
    run = tmp_path / "run"
    run.mkdir()
    kdat = run / "criu.kdat"
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot = f.read().encode()

    def check(n):
        log = tmp_path / f"check{n}.log"
        r = subprocess.run(["unshare", "-m", "sh", "-c",
                            'mount --make-rprivate / && mount --bind "$0" /run && exec "$@"',
                            str(run), criu, "check", "-v4", "-o", str(log)],
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, (r.stderr.decode(), read_file(str(log)))
        return "Loaded kdat cache" in read_file(str(log))

    assert not check(1) and kdat.exists()
    assert check(2)
    data = kdat.read_bytes()
    assert data.count(boot) == 1, "the cache does not hold this boot's id"
    kdat.write_bytes(data.replace(boot, b"0" * (len(boot) - 1) + b"\n"))
    assert not check(3), "a cache of another boot was loaded"
    assert check(4)
    assert sorted(os.listdir(run)) == ["criu.kdat"], "a temporary cache file was left"
