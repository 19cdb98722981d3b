# SPDX-License-Identifier: GPL-2.0
"""What a tracked chain says a task holds, against what the task holds.

Under --uffd-wp-track the final dump looks up only the pages the tracker
calls changed; every other page is a hole pointing into the parent images,
whether it is there or not. This checks that promise where it is hardest:
pages written and then dropped with MADV_DONTNEED (and left empty, or
written again), a huge page split by a write, and a region moved with
mremap between two iterations. A memwl process gets two pre-dumps and a
final dump that leaves it running, each after a round of such changes;
then every page of its regions, read through /proc/PID/mem, must equal
the page the chain gives (a page no layer has reads as zeros).
"""
import os
import subprocess

import pytest

from helpers import PAGE
from img_helpers import CRIU_PE_PARENT, CRIU_PE_PRESENT, criu_pagemap_entries
from test_criu import criu, plugdir  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(180)


class Layer:
    """One dump directory's pagemap of a task: its entries and page data."""

    def __init__(self, d, pid, parent=None):
        self.entries, self.data = criu_pagemap_entries(d, f"pagemap-{pid}.img")
        self.parent = parent

    def page(self, addr):
        for vaddr, nr, flags, off in self.entries:
            if vaddr <= addr < vaddr + nr * PAGE:
                if flags & CRIU_PE_PRESENT:
                    o = off + (addr - vaddr)
                    return self.data[o:o + PAGE]
                if flags & CRIU_PE_PARENT:
                    assert self.parent, f"hole at {addr:x} with no parent"
                    return self.parent.page(addr)
                return None
        return None


def _criu(criu, plugdir, what, pid, d, parent=None, extra=()):  # noqa: F811
    os.makedirs(d)
    args = [criu, what, "-t", str(pid), "-D", d, "-L", plugdir, "-v4", "-o", f"{what}.log",
            "--uffd-wp-track"] + list(extra)
    if parent:
        args += ["--prev-images-dir", parent]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    if r.returncode:
        with open(os.path.join(d, f"{what}.log")) as f:
            pytest.fail(f"criu {what}:\n" + "".join(f.readlines()[-25:]))


def _check(w, layer, regions):
    zero = bytes(PAGE)
    with open(f"/proc/{w.pid}/mem", "rb") as mem:
        for name, (addr, pages) in regions.items():
            for i in range(pages):
                a = addr + i * PAGE
                mem.seek(a)
                truth = mem.read(PAGE)
                got = layer.page(a)
                assert (got if got is not None else zero) == truth, \
                    f"{name} page {i} ({a:x}): the chain says " \
                    f"{'nothing' if got is None else got[:8].hex()}, the task holds {truth[:8].hex()}"


def test_tracked_chain_is_what_the_task_holds(criu, plugdir, tmp_path, wl):  # noqa: F811
    w = wl(preexec=os.setsid)
    regions = {"anon": (w.map(1, "anon", 512)[0], 512), "thp": (w.map(2, "thp", 1024)[0], 1024),
               "moved": (w.map(3, "anon", 256)[0], 256)}
    for rid, n in ((1, 512), (2, 1024), (3, 256)):
        w.cmd(f"write {rid} 0 {n} 1")
    d = str(tmp_path)
    _criu(criu, plugdir, "pre-dump", w.pid, f"{d}/1")

    w.cmd("write 1 0 32 2")            # rewritten
    w.cmd("dontneed 1 32 32")          # dropped, left empty
    w.cmd("dontneed 1 64 32")          # dropped, then half written again
    w.cmd("write 1 64 16 3")
    w.cmd("write 2 5 1 4")             # splits a huge page
    w.cmd("dontneed 2 600 11")
    addr = int(w.cmd("move 3")[0], 16)  # the whole region elsewhere
    regions["moved"] = (addr, 256)
    _criu(criu, plugdir, "pre-dump", w.pid, f"{d}/2", "../1")

    w.cmd("write 1 200 11 5")
    w.cmd("dontneed 1 0 4")
    w.cmd("write 1 40 1 6")            # a page dropped an iteration ago
    w.cmd("write 3 10 3 6")
    w.cmd("dontneed 3 100 5")
    _criu(criu, plugdir, "dump", w.pid, f"{d}/3", "../2", ["-R"])

    chain = None
    for n in (1, 2, 3):
        chain = Layer(f"{d}/{n}", w.pid, chain)
    _check(w, chain, regions)
    with open(f"{d}/3/dump.log") as f:
        log = f.read()
    assert "in parent" in log
    # Tracked VMAs are userfaultfd-registered: the VMA reader must know the bit.
    if "vma-bpf: Reading VMA flags with the task_vma iterator" in log:
        assert "unseen before, reading smaps" not in log, \
            [ln for ln in log.splitlines() if "unseen before" in ln][:2]
