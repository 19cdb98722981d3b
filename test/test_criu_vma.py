# SPDX-License-Identifier: GPL-2.0
"""CRIU reads VMA flags through the task_vma BPF iterator, not smaps.

A process maps regions with every flag CRIU reads from smaps' VmFlags
(madvise advice, mlock, MAP_GROWSDOWN, MAP_NORESERVE, shared and read-only
file mappings, PROT_NONE) and stops itself. It is dumped twice, leaving it
running: once as CRIU does by default, once with the iterator turned off
(CRIU_FAULT=139, smaps as before). The mm images must be identical byte
for byte. A VMA with a flag the calibration never saw (mlock2 ONFAULT)
must send the task back to smaps, and give the same image too.
"""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from helpers import read_file, wait_stopped
from test_criu import criu  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(120)

BPF_LINE = "vma-bpf: Reading VMA flags with the task_vma iterator"
SMAPS_LINE = "vma-bpf: Reading VMA flags from smaps (fault injected)"
FI_DONT_USE_BPF_VMA = "139"

WORKLOAD = textwrap.dedent("""
    import ctypes, mmap, os, signal, sys
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    PG = 4096
    RW = mmap.PROT_READ | mmap.PROT_WRITE
    PRIV = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    def m(flags=PRIV, prot=RW, n=4, fd=-1):
        a = libc.mmap(None, n * PG, prot, flags, fd, 0)
        assert a not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        if prot & mmap.PROT_WRITE:
            ctypes.memset(a, 0x5a, n * PG)
        return a
    for advice in (2, 1, 10, 16, 12, 14, 15, 18):  # SEQ RAND DONTFORK DONTDUMP MERGE HUGE NOHUGE WIPE
        a = m()
        if libc.madvise(ctypes.c_void_p(a), 4 * PG, advice):
            print("madvise", advice, "refused", file=sys.stderr)
    a = m()
    libc.mlock(ctypes.c_void_p(a), 4 * PG)
    m(PRIV | 0x100)                       # MAP_GROWSDOWN
    m(PRIV | 0x4000)                      # MAP_NORESERVE
    m(mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    m(prot=0)                             # PROT_NONE
    fd = os.open(sys.executable, os.O_RDONLY)
    m(mmap.MAP_SHARED, mmap.PROT_READ, 1, fd)
    if "onfault" in sys.argv:
        a = m()
        libc.syscall(325, ctypes.c_void_p(a), ctypes.c_size_t(4 * PG), 1)  # mlock2(MLOCK_ONFAULT)
    os.kill(os.getpid(), signal.SIGSTOP)
    signal.pause()
""")


def _dump(criu, pid, d, fault=None):
    os.makedirs(d)
    env = dict(os.environ)
    env.pop("CRIU_FAULT", None)
    if fault:
        env["CRIU_FAULT"] = fault
    r = subprocess.run([criu, "dump", "-t", str(pid), "-D", d, "-R", "-v4", "-o", "dump.log"],
                       env=env, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    log = read_file(os.path.join(d, "dump.log")) or ""
    assert r.returncode == 0, "\n".join(log.splitlines()[-25:])
    with open(os.path.join(d, f"mm-{pid}.img"), "rb") as f:
        return f.read(), log


@pytest.mark.parametrize("extra", ["", "onfault"])
def test_vma_flags_as_smaps(criu, tmp_path, extra):  # noqa: F811
    p = subprocess.Popen(["setsid", sys.executable, "-c", WORKLOAD, extra],
                         stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_stopped([p.pid], timeout=20)
        bpf_img, bpf_log = _dump(criu, p.pid, str(tmp_path / "bpf"))
        if BPF_LINE not in bpf_log:
            why = [ln for ln in bpf_log.splitlines() if "vma-bpf" in ln]
            if not why:
                pytest.skip(f"{criu} is built without the task_vma iterator (needs libbpf-dev, "
                            "clang and bpftool when CRIU is built; scripts/build-criu installs them)")
            pytest.fail("the iterator did not load: " + why[-1])
        smaps_img, smaps_log = _dump(criu, p.pid, str(tmp_path / "smaps"), FI_DONT_USE_BPF_VMA)
        assert SMAPS_LINE in smaps_log
        fallback = "unseen before, reading smaps" in bpf_log
        assert fallback == (extra == "onfault"), \
            [ln for ln in bpf_log.splitlines() if "vma-bpf" in ln][-3:]
        assert bpf_img == smaps_img, "mm images differ between the iterator and smaps"
    finally:
        p.kill()
        p.wait()
    assert p.returncode == -signal.SIGKILL
