# SPDX-License-Identifier: GPL-2.0
"""Remote system calls and userfaultfd injection (plugin/lib/track/inject.c), and
the feature probe (plugin/lib/track/probe.c), driven through `uffdwp __debug`.

Each test starts real target processes from test/workloads, injects into
them from outside, and lets the target itself check that its blocked system
call, registers, signal mask and signals came through unharmed (exit 0).
"""
import os
import select
import signal
import subprocess
import time

import pytest

BUILD = os.environ.get("UFFDWP_BUILD", "/work/main/build")
UFFDWP = os.path.join(BUILD, "uffdwp")
TEST_TIMEOUT = 60  # seconds, per test


def workload(name):
    return os.path.join(BUILD, "test", name)


def probe():
    """{key: (state, name, kernel)} from `uffdwp __debug probe`."""
    out = subprocess.run([UFFDWP, "__debug", "probe"], capture_output=True, text=True,
                         timeout=30).stdout
    feats = {}
    for line in out.splitlines():
        key, state, name, kernel, _req, _why = line.split("\t")
        feats[key] = (state, name, kernel)
    return feats


def missing_for_inject():
    if os.geteuid() != 0:
        return "needs root (ptrace of unrelated processes, pidfd_getfd)"
    if not os.path.exists(UFFDWP):
        return f"{UFFDWP} not built"
    feats = probe()
    for key in ("USERFAULTFD", "PIDFD_GETFD"):
        state, name, kernel = feats[key]
        if state != "present":
            return f"{name} is missing: it needs Linux {kernel}"
    return None


_MISSING = missing_for_inject()
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")


class _Timeout(Exception):
    pass


@pytest.fixture(autouse=True)
def timeout():
    """No pytest-timeout here: SIGALRM fails a test that hangs."""
    def fire(signum, frame):
        raise _Timeout(f"test took longer than {TEST_TIMEOUT} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def procs():
    """Processes a test starts; killed by pid, whatever happens."""
    started = []
    yield started
    for p in started:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for f in (p.stdin, p.stdout, p.stderr):
            if f:
                f.close()


def readline(p, timeout=10):
    """One line of the workload's stdout, within @timeout seconds."""
    buf = b""
    end = time.monotonic() + timeout
    fd = p.stdout.fileno()
    while not buf.endswith(b"\n"):
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no line from pid {p.pid} within {timeout} s (got {buf!r})")
        ch = os.read(fd, 1)
        if not ch:
            raise AssertionError(f"pid {p.pid} closed stdout (got {buf!r}), rc {p.wait()}")
        buf += ch
    return buf.decode().strip()


def start(procs, *args):
    """Start a workload and wait until it says ready; returns (Popen, rest of line)."""
    p = subprocess.Popen([workload(args[0])] + [str(a) for a in args[1:]],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    procs.append(p)
    line = readline(p)
    assert line.startswith("ready"), line
    return p, line[len("ready"):].strip()


def finish(p, data=None, timeout=15):
    """Optionally send @data, then wait for exit; returns (rc, stdout)."""
    if data is not None:
        p.stdin.write(data)
        p.stdin.flush()
    p.wait(timeout=timeout)
    out = p.stdout.read().decode()
    return p.returncode, out


def cli(*args, timeout=20):
    return subprocess.run([UFFDWP, "__debug"] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout)


def kv(out):
    """'key value' lines into a dict."""
    d = {}
    for line in out.splitlines():
        k, _, v = line.partition(" ")
        d[k] = v
    return d


def fd_links(pid, tid=None):
    d = f"/proc/{pid}/task/{tid}/fd" if tid else f"/proc/{pid}/fd"
    links = {}
    for fd in os.listdir(d):
        try:
            links[fd] = os.readlink(f"{d}/{fd}")
        except FileNotFoundError:
            pass
    return links


def thread_states(pid):
    """{tid: state letter} of every thread of @pid."""
    states = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                states[int(tid)] = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            pass
    return states


def wait_state(pid, want, tid=None, timeout=5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = thread_states(pid)
        if all(s in want for t, s in st.items() if tid is None or t == tid):
            return
        time.sleep(0.01)
    raise AssertionError(f"{pid} did not reach state {want}: {thread_states(pid)}")


def wait_blocked_in(pid, nr, timeout=5):
    """Until @pid sleeps in its own system call @nr: "ready" comes just
    before the call, and a remote call made before it would meet a signal
    meant for the call."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
        if fields and fields[0] == str(nr) and st[st.rindex(")") + 2] == "S":
            return
        time.sleep(0.005)
    raise AssertionError(f"{pid} is not blocked in system call {nr}")


def wait_remote_call(pid, tracer, timeout=5):
    """Until @tracer has @pid blocked in a call made from the [vdso], which is
    where inject.c finds its `syscall` instruction."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(f"/proc/{pid}/status") as f:
            traced = f"TracerPid:\t{tracer}\n" in f.read()
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
        with open(f"/proc/{pid}/maps") as f:
            vdso = [line.split()[0] for line in f if "[vdso]" in line]
        if traced and len(fields) == 9 and vdso:
            lo, hi = (int(x, 16) for x in vdso[0].split("-"))
            if lo <= int(fields[8], 16) < hi:
                return
        time.sleep(0.01)
    raise AssertionError(f"{pid} is not in a remote call of {tracer}")


def inject_uffd(pid, count=1, fd_tid=None):
    """Inject, check the fd we got and that the target's fd table is as before."""
    before = fd_links(pid, fd_tid)
    r = cli("inject-uffd", "-n", count, pid)
    assert r.returncode == 0, r.stderr
    res = kv(r.stdout)
    assert res["link"] == "anon_inode:[userfaultfd]"
    assert fd_links(pid, fd_tid) == before
    return res


def test_probe_reports_all_features():
    r = cli("probe")
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    keys = [row[0] for row in rows]
    assert keys == ["USERFAULTFD", "UFFD_WP", "WP_UNPOPULATED", "WP_ASYNC", "PAGEMAP_SCAN",
                    "PTE_MARKER", "WP_SHMEM", "PIDFD_GETFD", "THP", "MADV_COLLAPSE"]
    for key, state, name, kernel, req, why in rows:
        assert state in ("present", "missing"), (key, state, why)
        assert name and kernel[0].isdigit()
        assert req in ("required", "optional")
    missing = [row for row in rows if row[1] != "present" and row[4] == "required"]
    if missing:
        # The tracker check names the first missing one, with its kernel.
        _key, _state, name, kernel, _req, _why = missing[0]
        assert r.returncode == 1
        assert f"{name} is missing: it needs Linux {kernel}" in r.stderr
    else:
        assert r.returncode == 0, r.stderr


NR_USERFAULTFD, NR_PIDFD_OPEN, NR_PIDFD_GETFD, NR_PAUSE = 323, 434, 438, 34  # x86-64
ENOSYS, EPERM = 38, 1


def probe_denied(errno_, *nrs):
    """`uffdwp __debug probe` under a seccomp filter failing @nrs with @errno_."""
    r = subprocess.run([workload("seccomp_deny"), str(errno_), ",".join(map(str, nrs)),
                        UFFDWP, "__debug", "probe"], capture_output=True, text=True,
                       timeout=30)
    rows = {line.split("\t")[0]: line.split("\t") for line in r.stdout.splitlines()}
    return r, rows


def test_probe_missing_feature():
    """A feature the kernel refuses is missing, named with its kernel version."""
    r, rows = probe_denied(ENOSYS, NR_PIDFD_GETFD)
    assert rows["PIDFD_GETFD"][1] == "missing"
    assert rows["PIDFD_GETFD"][5] == os.strerror(ENOSYS)
    assert rows["USERFAULTFD"][1] == "present"
    assert r.returncode == 1
    assert "pidfd_getfd is missing: it needs Linux 5.6" in r.stderr


def test_probe_eperm_hint():
    r, rows = probe_denied(EPERM, NR_PIDFD_OPEN)
    assert rows["PIDFD_GETFD"][1] == "missing"
    assert r.returncode == 1
    assert "pidfd_getfd is missing: it needs Linux 5.6" in r.stderr
    assert "seccomp" in r.stderr


@pytest.mark.skipif(not os.path.exists("/dev/userfaultfd"), reason="no /dev/userfaultfd")
def test_probe_dev_userfaultfd_fallback():
    """userfaultfd(2) refused, /dev/userfaultfd (6.1) still hands one out."""
    r, rows = probe_denied(EPERM, NR_USERFAULTFD)
    assert r.returncode == 0, r.stderr
    for key in ("USERFAULTFD", "UFFD_WP", "WP_ASYNC", "WP_UNPOPULATED"):
        assert rows[key][1] == "present", rows[key]


def test_seccomp_target(procs):
    """A target whose filter refuses userfaultfd: root suspends the filter
    while it runs our calls, and the filter is back afterwards."""
    p = subprocess.Popen([workload("seccomp_deny"), str(EPERM), str(NR_USERFAULTFD),
                          workload("inj_block"), "read"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(p)
    assert readline(p) == "ready"
    inject_uffd(p.pid, count=3)
    with open(f"/proc/{p.pid}/status") as f:
        assert "Seccomp:\t2\n" in f.read()
    rc, out = finish(p, b"hello\n")
    assert rc == 0, out


@pytest.mark.parametrize("mode", ["read", "select", "poll", "futex"])
def test_blocked_call_survives(procs, mode):
    """The target's interrupted call restarts and still gets its data."""
    p, _ = start(procs, "inj_block", mode)
    inject_uffd(p.pid)
    inject_uffd(p.pid, count=20)
    r = cli("remote-syscall", "-n", 20, p.pid, "getpid")
    assert r.returncode == 0, r.stderr
    assert int(kv(r.stdout)["ret"]) == p.pid
    assert p.poll() is None, "the target returned from its call early"
    rc, out = finish(p, b"hello\n")
    assert rc == 0, out


def test_nanosleep_neither_early_nor_restarted(procs):
    """nanosleep() goes on through restart_syscall with its remaining time."""
    p, _ = start(procs, "inj_block", "nanosleep", 1500)
    time.sleep(0.5)
    inject_uffd(p.pid, count=10)
    rc, out = finish(p)
    assert rc == 0, out


@pytest.mark.parametrize("mode", ["pause", "sigsuspend", "pselect"])
def test_signal_wait_survives(procs, mode):
    """pause/sigsuspend/pselect keep waiting, then wake for the real signal,
    with the signal mask of before (sigsuspend and pselect swap it)."""
    p, _ = start(procs, "inj_block", mode)
    inject_uffd(p.pid, count=10)
    time.sleep(0.1)
    assert p.poll() is None, "the wait returned without a signal"
    os.kill(p.pid, signal.SIGUSR1)
    rc, out = finish(p)
    assert rc == 0, out


def test_signal_during_injection_kept(procs):
    """A signal that arrives while we run a call in the target stays pending
    and is delivered after we leave, interrupting the target's own pause()
    with EINTR as it would have without us. A SIGSTOP in the same window
    ends our call and leaves the target stopped."""
    p, _ = start(procs, "inj_block", "pause")
    wait_blocked_in(p.pid, NR_PAUSE)
    # A remote pause() blocks until something unblockable comes.
    c = subprocess.Popen([UFFDWP, "__debug", "remote-syscall", str(p.pid), "pause"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(c)
    wait_remote_call(p.pid, c.pid)
    os.kill(p.pid, signal.SIGUSR1)  # blocked by the injection: pending
    time.sleep(0.1)
    assert c.poll() is None and p.poll() is None
    os.kill(p.pid, signal.SIGSTOP)
    out, err = c.communicate(timeout=10)
    assert c.returncode == 0, err
    assert int(kv(out)["ret"]) == -514  # -ERESTARTNOHAND: pause() cut short by SIGSTOP
    wait_state(p.pid, "T")
    time.sleep(0.2)
    assert thread_states(p.pid)[p.pid] == "T"
    os.kill(p.pid, signal.SIGCONT)
    rc, out = finish(p)
    assert rc == 0, out


def test_stop_signals_during_session(procs):
    """SIGSTOP/SIGCONT flying while one attach runs many calls: the stops we
    meet (signal-delivery-stop of SIGSTOP, group stop) are passed on, our
    calls keep their results, and the target ends as the last signal says."""
    p, _ = start(procs, "inj_block", "read")
    c = subprocess.Popen([UFFDWP, "-v", "-v", "__debug", "remote-syscall", "-r", "20000",
                          str(p.pid), "getpid"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(c)
    for _ in range(40):
        if c.poll() is not None:
            break
        os.kill(p.pid, signal.SIGSTOP)
        time.sleep(0.003)
        os.kill(p.pid, signal.SIGCONT)
        time.sleep(0.003)
    out, err = c.communicate(timeout=30)
    assert c.returncode == 0, err
    assert int(kv(out)["ret"]) == p.pid
    print("SIGSTOPs passed on:", err.count("handed back"), "group stops:", err.count("group stop"))
    wait_state(p.pid, "S")
    rc, out = finish(p, b"hello\n")
    assert rc == 0, out


def test_registers_intact(procs):
    """Registers and flags of a thread interrupted in user space come back."""
    # The target computes well past the 2.5 s of calls: a last round that a
    # loaded machine stretches must not meet it exiting.
    p, _ = start(procs, "inj_block", "compute", 6000)
    end = time.monotonic() + 2.5
    n = 0
    while time.monotonic() < end:
        r = cli("remote-syscall", "-n", 50, p.pid, "getpid")
        assert r.returncode == 0, r.stderr
        inject_uffd(p.pid, count=5)
        n += 55
    rc, out = finish(p)
    assert rc == 0, out
    assert "rounds" in out
    assert n > 100


def test_epoll_wait_sees_eintr(procs):
    """Kernel behaviour, not ours: epoll_wait() is not restarted after a
    ptrace stop (signal(7)); the target sees EINTR and retries."""
    p, _ = start(procs, "inj_block", "epoll")
    inject_uffd(p.pid, count=3)
    rc, out = finish(p, b"hello\n")
    assert rc == 0, out
    eintr = int(out.split("eintr")[1].split()[0])
    assert eintr >= 1


def test_multithreaded(procs):
    """Only one thread is stopped; the others keep going and all end well."""
    p, _ = start(procs, "inj_threads", "threads")
    assert len(thread_states(p.pid)) == 4
    inject_uffd(p.pid, count=20)
    r = cli("remote-syscall", p.pid, "gettid")
    assert r.returncode == 0, r.stderr
    assert int(kv(r.stdout)["ret"]) == p.pid  # the leader ran it
    rc, out = finish(p, b"hello\n")
    assert rc == 0, out


def test_group_stopped_stays_stopped(procs):
    p, _ = start(procs, "inj_block", "read")
    os.kill(p.pid, signal.SIGSTOP)
    wait_state(p.pid, "T")
    inject_uffd(p.pid, count=5)
    r = cli("remote-syscall", p.pid, "getpid")
    assert r.returncode == 0, r.stderr
    time.sleep(0.3)
    assert thread_states(p.pid) == {p.pid: "T"}
    p.stdin.write(b"hello\n")
    p.stdin.flush()
    time.sleep(0.1)
    assert p.poll() is None, "ran while stopped"
    os.kill(p.pid, signal.SIGCONT)
    rc, out = finish(p)
    assert rc == 0, out


def test_group_stopped_multithreaded(procs):
    p, _ = start(procs, "inj_threads", "threads")
    os.kill(p.pid, signal.SIGSTOP)
    wait_state(p.pid, "T")
    inject_uffd(p.pid, count=5)
    time.sleep(0.3)
    assert set(thread_states(p.pid).values()) == {"T"}
    os.kill(p.pid, signal.SIGCONT)
    rc, out = finish(p, b"hello\n")
    assert rc == 0, out


def test_zombie_leader(procs):
    """A leader that exited while its threads live cannot stop: a thread is used."""
    p, tid = start(procs, "inj_threads", "zombie")
    tid = int(tid)
    wait_state(p.pid, "Z", tid=p.pid)
    inject_uffd(p.pid, count=5, fd_tid=tid)
    r = cli("remote-syscall", p.pid, "gettid")
    assert r.returncode == 0, r.stderr
    assert int(kv(r.stdout)["ret"]) == tid
    assert kv(r.stdout)["tid"] == str(tid)
    rc, out = finish(p, b"hello\n")
    assert rc == 0, out


def test_thread_that_cannot_stop(procs):
    """A vfork() parent waits uninterruptibly: attach gives up after 5 s with
    a clear error instead of hanging, and the target is not harmed."""
    p, _ = start(procs, "inj_block", "vfork")
    wait_state(p.pid, "D", tid=p.pid)
    t0 = time.monotonic()
    r = cli("inject-uffd", p.pid)
    took = time.monotonic() - t0
    assert r.returncode == 1
    assert "did not stop within" in r.stderr
    assert 4 < took < 10
    p.stdin.write(b"g")  # the vfork child exits, the parent goes on
    p.stdin.flush()
    time.sleep(0.2)
    inject_uffd(p.pid)
    rc, out = finish(p, b"hello\n")
    assert rc == 0, out


def test_nonexistent_pid():
    q = subprocess.Popen(["true"])
    q.wait()
    r = cli("inject-uffd", q.pid)
    assert r.returncode == 1
    assert f"no process {q.pid}" in r.stderr
    r = cli("remote-syscall", q.pid, "getpid")
    assert r.returncode == 1
    assert f"no process {q.pid}" in r.stderr


def test_bad_arguments():
    assert cli("inject-uffd", "notapid").returncode == 2
    assert cli("remote-syscall", "1").returncode == 2
    assert cli("nosuchthing").returncode == 2


def test_already_traced(procs):
    p, _ = start(procs, "inj_block", "read")
    t, _ = start(procs, "inj_tracer", p.pid)
    r = cli("inject-uffd", p.pid)
    assert r.returncode == 1
    assert f"already traced by {t.pid}" in r.stderr
    t.stdin.close()
    t.wait(timeout=10)
    inject_uffd(p.pid)  # and works once the other tracer is gone
    rc, out = finish(p, b"hello\n")
    assert rc == 0, out


def test_target_dies_during_injection(procs):
    """SIGKILL while our call runs in the target: a clean error, no hang."""
    p, _ = start(procs, "inj_block", "read")
    c = subprocess.Popen([UFFDWP, "__debug", "remote-syscall", str(p.pid), "pause"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(c)
    wait_remote_call(p.pid, c.pid)
    assert c.poll() is None
    os.kill(p.pid, signal.SIGKILL)
    out, err = c.communicate(timeout=10)
    assert c.returncode == 1
    assert "exited" in err
    p.wait(timeout=10)
    assert p.returncode == -signal.SIGKILL


def test_signal_storm(procs):
    """Real-time signals queued at the target while we inject again and
    again: none lost, none doubled, siginfo intact."""
    p, _ = start(procs, "inj_threads", "rtsig", 3000)
    end = time.monotonic() + 1.5
    n = 0
    while time.monotonic() < end and p.poll() is None:
        r = cli("remote-syscall", "-n", 50, p.pid, "getpid")
        if p.poll() is not None:
            break
        assert r.returncode == 0, r.stderr
        assert int(kv(r.stdout)["ret"]) == p.pid
        n += 50
    rc, out = finish(p, timeout=30)
    assert rc == 0, out
    assert n >= 50


def test_injection_time(procs):
    """The whole userfaultfd injection, as the tracker pays for it."""
    p, _ = start(procs, "inj_block", "read")
    res = inject_uffd(p.pid, count=50)
    median = float(res["usec_median"])
    print(f"inject-uffd: median {median:.0f} us, min {res['usec_min']}, max {res['usec_max']}")
    assert median < 5000
    rc, out = finish(p, b"hello\n")
    assert rc == 0, out
