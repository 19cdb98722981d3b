# SPDX-License-Identifier: GPL-2.0
"""Probes that decide what can run here, each skip naming the missing thing."""
import os
import subprocess

import pytest

from helpers import BUILD, UFFDWP, Workload, no_rseq, stop_holder


def _kernel():
    rel = os.uname().release.split("-")[0].split(".")
    return tuple(int(x) for x in rel[:2])


def _thp_mode():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().split("[")[1].split("]")[0]
    except OSError:
        return "absent"


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(feature): skip unless the feature is here")


@pytest.fixture(scope="session")
def built():
    if not os.access(UFFDWP, os.X_OK):
        pytest.fail(f"{UFFDWP} is not built: run make first")
    return BUILD


@pytest.fixture(scope="session")
def tracking(built):
    """The kernel features the tracker cannot do without."""
    if os.geteuid() != 0:
        pytest.skip("tracking another process needs root (ptrace, pidfd_getfd, map_files)")
    if _kernel() < (6, 7):
        pytest.skip(f"kernel {os.uname().release}: UFFD_FEATURE_WP_ASYNC and "
                    "PAGEMAP_SCAN need Linux 6.7")
    return True


@pytest.fixture
def thp():
    mode = _thp_mode()
    if mode not in ("always", "madvise"):
        pytest.skip(f"transparent huge pages are '{mode}'")
    return mode


@pytest.fixture
def hugetlb():
    """Reserve 2 MiB huge pages for the test and give back the old count after."""
    path = "/proc/sys/vm/nr_hugepages"
    try:
        with open(path) as f:
            old = int(f.read())
    except OSError as e:
        pytest.skip(f"no hugetlb: {e}")
    try:
        with open(path, "w") as f:
            f.write(str(old + 8))
        with open(path) as f:
            now = int(f.read())
        if now < old + 8:
            pytest.skip(f"could reserve only {now - old} of 8 huge pages")
        yield now
    finally:
        with open(path, "w") as f:
            f.write(str(old))


@pytest.fixture
def wl(tracking):
    """A memwl workload, killed with all its descendants and holder at the end."""
    made = []

    def make(*args, **kw):
        w = Workload(*args, **kw)
        made.append(w)
        return w
    yield make
    for w in made:
        stop_holder(w.pid)
        w.stop()


@pytest.fixture
def qwl(wl):
    """wl, but a workload whose memory only its own writes change."""
    return lambda *a, **kw: wl(*a, preexec=no_rseq, **kw)


@pytest.fixture
def swap():
    """A small swap file for the test, switched off and removed after."""
    path = "/var/tmp/uffdwp-test.swap"
    with open("/proc/swaps") as f:
        before = f.read()
    made = False
    try:
        r = subprocess.run(["fallocate", "-l", "128M", path], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot make a swap file: {r.stderr.strip()}")
        os.chmod(path, 0o600)
        made = True
        for cmd in (["mkswap", path], ["swapon", path]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                pytest.skip(f"{' '.join(cmd)}: {r.stderr.strip()}")
        yield path
    finally:
        if made:
            with open("/proc/swaps") as f:
                if path in f.read():
                    subprocess.run(["swapoff", path], capture_output=True)
            os.unlink(path)
        with open("/proc/swaps") as f:
            assert f.read() == before, "swap left changed"


def _fork_events_why_not():
    """Why the tracker gets no fork events from the proc connector here, or None.
    Without them it counts every shared object as written at every scan
    (plugin/lib/track/forkwatch.h), so exact shared-memory results cannot be had.
    Asks the tracker's own subscription (uffdwp __debug forkwatch), which
    names the cause."""
    if os.environ.get("UFFDWP_NO_FORK_EVENTS"):
        return "UFFDWP_NO_FORK_EVENTS is set"
    p = subprocess.run([UFFDWP, "__debug", "forkwatch"], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    if p.returncode == 0 and p.stdout.startswith("fork_events yes"):
        return None
    return (p.stdout.strip() or p.stderr.strip() or f"exit {p.returncode}").replace(
        "fork_events no: ", "")


@pytest.fixture(scope="session")
def fork_events(tracking, built):
    """Exact results for shared memory need the proc connector's fork events."""
    why = _fork_events_why_not()
    if why:
        pytest.skip(f"no fork events, shared memory is dirty at every scan: {why}")
