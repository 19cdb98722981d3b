# SPDX-License-Identifier: GPL-2.0
"""The holder: the process that keeps a tracker between commands. What a
killed holder means (all memory dirty, its files swept), that there is one
per tree, its idle timeout and that it leaves with its tasks."""
import os
import select
import signal
import time

import pytest

from helpers import dirty_in, holder_file, uffdwp

pytestmark = pytest.mark.timeout(120)


def test_holder_killed_means_all_dirty(wl):
    w = wl()
    addr, length = w.map(1, "anon", 32)
    w.cmd("write 1 0 32 1")
    _, st, _ = uffdwp("track", "start", "-t", w.pid)
    os.kill(st["holder_pid"], signal.SIGKILL)
    time.sleep(0.1)
    rc, rep, err = uffdwp("track", "scan", "-t", w.pid, check=False)
    assert rc == 3
    assert "tracking lost" in err
    assert rep["tracking_lost"]
    assert dirty_in(rep, w.pid, addr, addr + length) == 32
    # Tracking can start again, from scratch.
    uffdwp("track", "start", "-t", w.pid)


def test_killed_holder_files_swept(wl):
    """A killed holder cannot clean up; the next holder to start, for any
    process, takes its lock and removes what it left. A live holder's
    files stay."""
    a, b, c = wl(), wl(), wl()
    _, sa, _ = uffdwp("track", "start", "-t", a.pid)
    uffdwp("track", "start", "-t", b.pid)
    # Something said in the log is kept; an empty log goes.
    with open(holder_file(a.pid, "log"), "a") as f:
        f.write("a line the dead holder wrote\n")
    # Logs of holders long gone go after a week; newer ones stay.
    old_log, new_log = holder_file(4999999, "log"), holder_file(4999998, "log")
    try:
        for path, age in ((old_log, 8 * 86400), (new_log, 6 * 86400)):
            with open(path, "w") as f:
                f.write("said something\n")
            os.utime(path, (time.time() - age, time.time() - age))
        os.kill(sa["holder_pid"], signal.SIGKILL)
        for _ in range(100):
            if not os.path.exists(f"/proc/{sa['holder_pid']}"):
                break
            time.sleep(0.05)
        # The kill leaves them; any holder starting on this machine meanwhile
        # (/run/uffdwp is everybody's) may have swept them already.
        uffdwp("track", "start", "-t", c.pid)
        assert not os.path.exists(holder_file(a.pid, "lock")), "dead holder's lock left"
        assert not os.path.exists(holder_file(a.pid, "sock")), "dead holder's socket left"
        assert os.path.exists(holder_file(a.pid, "log")), "a log with text was removed"
        assert not os.path.exists(old_log), "a week-old log of a gone holder stayed"
        assert os.path.exists(new_log), "a recent log was removed"
        for w in (b, c):
            assert os.path.exists(holder_file(w.pid, "sock"))
            rc, st, _ = uffdwp("track", "status", "-t", w.pid)
            assert st["tracked"]
    finally:
        for path in (old_log, new_log, holder_file(a.pid, "log")):
            if os.path.exists(path):
                os.unlink(path)


def test_second_tracker_refused(wl):
    w = wl()
    uffdwp("track", "start", "-t", w.pid)
    rc, _, err = uffdwp("track", "start", "-t", w.pid, check=False)
    assert rc == 1 and "already tracked" in err
    rc, _, err = uffdwp("track", "rate", "-t", w.pid, "--count", "1", check=False)
    assert rc == 1 and "already tracked" in err


def _holder_gone(pid, timeout=5):
    end = time.time() + timeout
    while time.time() < end:
        rc, out, _ = uffdwp("track", "status", "-t", pid, check=False)
        if rc == 3 and not out["tracked"]:
            return True
        time.sleep(0.1)
    return False


def _gone_at(pid, poll=0.05, timeout=10):
    """When the holder of pid stops answering, polled with status queries,
    which must not count as use."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rc, out, _ = uffdwp("track", "status", "-t", pid, check=False)
        if rc == 3 and not out["tracked"]:
            return time.monotonic()
        assert out["idle_timeout_s"] == 1
        time.sleep(poll)
    raise AssertionError("holder outlived its idle timeout")


def test_holder_idle_timeout(wl):
    """Idle is the time since the holder was ready or last used (scan,
    commit, stop, adopt); a status query is no use. The holder exits at the
    timeout, to within 10 ms; the bounds here leave room for a loaded
    machine (each status query is a process of its own)."""
    w = wl()
    t0 = time.monotonic()
    uffdwp("track", "start", "-t", w.pid, "--idle-timeout", "1")
    t1 = time.monotonic()
    gone = _gone_at(w.pid)
    assert gone - t0 >= 1.0, f"exited after {gone - t0:.2f} s of a 1 s timeout"
    assert gone - t1 <= 1.0 + 0.4, f"exited {gone - t1:.2f} s after start"
    rc, rep, err = uffdwp("track", "scan", "-t", w.pid, check=False)
    assert rc == 3 and rep["tracking_lost"]
    # A scan is a use: the second starts the timer again.
    uffdwp("track", "start", "-t", w.pid, "--idle-timeout", "1")
    time.sleep(0.6)
    t2 = time.monotonic()
    uffdwp("track", "scan", "-t", w.pid)
    t3 = time.monotonic()
    _, st, _ = uffdwp("track", "status", "-t", w.pid)
    assert st["idle_ms"] < 1000 * (time.monotonic() - t2)
    # Its exit as the kernel tells it (a pidfd), no process of ours between:
    # the 10 ms of the timer, plus 40 ms for two wake-ups on a busy machine.
    fd = os.pidfd_open(st["holder_pid"])
    try:
        ready, _, _ = select.select([fd], [], [], 10)
        gone = time.monotonic()
    finally:
        os.close(fd)
    assert ready, "holder outlived its idle timeout"
    assert gone - t2 >= 1.0 and gone - t3 <= 1.0 + 0.05, (gone - t2, gone - t3)
    _gone_at(w.pid)  # and status says so


def test_holder_exits_with_its_tasks(wl):
    w = wl()
    _, st, _ = uffdwp("track", "start", "-t", w.pid)
    os.kill(w.pid, signal.SIGKILL)
    w.proc.wait(timeout=10)
    assert _holder_gone(w.pid)
    time.sleep(0.2)
    assert not os.path.exists(holder_file(w.pid, "lock")), "lock file left behind"
    assert not os.path.exists(holder_file(w.pid, "sock")), "socket left behind"
    assert not os.path.exists(f"/proc/{st['holder_pid']}/status") or \
        open(f"/proc/{st['holder_pid']}/status").read().find("State:\tZ") >= 0


def test_holder_socket_is_private(wl):
    w = wl()
    uffdwp("track", "start", "-t", w.pid)
    st = os.stat("/run/uffdwp")
    assert st.st_mode & 0o777 == 0o700
    st = os.stat(holder_file(w.pid, "sock"))
    assert st.st_mode & 0o077 == 0
