# SPDX-License-Identifier: GPL-2.0
"""Shared pieces of the container runtime and real-program tests: CRIU's
configuration files, pagemap and stats images, lines from a pipe."""
import contextlib
import fcntl
import glob
import os
import select
import struct
import time

from img_helpers import CRIU_PAGEMAP_MAGIC, criu_img_records, pb_fields

PAGE = 4096
ETC_CRIU = "/etc/criu"
PE_PARENT, PE_LAZY, PE_PRESENT = 1, 2, 4
# Other worktrees' test runs may set /etc/criu up at the same time.
LOCK = "/run/lock/uffdwp-etc-criu.lock"


@contextlib.contextmanager
def criu_config(files):
    """Write /etc/criu/NAME for each NAME: [lines] in @files for the block,
    then put every /etc/criu/*.conf and the directory back as they were."""
    os.makedirs(os.path.dirname(LOCK), exist_ok=True)
    lock = open(LOCK, "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    had_dir = os.path.isdir(ETC_CRIU)
    saved = {}
    for p in glob.glob(os.path.join(ETC_CRIU, "*.conf")):
        st = os.stat(p)
        with open(p, "rb") as f:
            saved[p] = (f.read(), st.st_mode & 0o7777)
    try:
        os.makedirs(ETC_CRIU, exist_ok=True)
        for name, lines in files.items():
            with open(os.path.join(ETC_CRIU, name), "w") as f:
                f.write("".join(line + "\n" for line in lines))
        yield
    finally:
        for p in glob.glob(os.path.join(ETC_CRIU, "*.conf")):
            if p not in saved:
                os.unlink(p)
        for p, (data, mode) in saved.items():
            with open(p, "wb") as f:
                f.write(data)
            os.chmod(p, mode)
        if not had_dir:
            with contextlib.suppress(OSError):
                os.rmdir(ETC_CRIU)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def read_line(f, timeout, what):
    """One line from the pipe @f (a binary file object), within @timeout s."""
    end = time.time() + timeout
    buf = b""
    fd = f.fileno()
    while not buf.endswith(b"\n"):
        left = end - time.time()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"timed out waiting for {what} (got {buf!r})")
        c = os.read(fd, 1)
        if not c:
            raise AssertionError(f"EOF waiting for {what} (got {buf!r})")
        buf += c
    return buf.decode().strip()


def pagemap_pages(d):
    """Pages whose data are in the images of directory @d (not in a parent):
    a set of page addresses over all its pagemap-*.img, shared memory's too."""
    out = set()
    for p in glob.glob(os.path.join(d, "pagemap-*.img")):
        for e in criu_img_records(p, CRIU_PAGEMAP_MAGIC)[1:]:
            # nr_pages (5) since CRIU 3.16, compat_nr_pages (2) before.
            vaddr, nr = e[1][0], e.get(5, e[2])[0]
            flags = e.get(4, [PE_PRESENT])[0]
            if flags & PE_PRESENT:
                out.update(vaddr + k * PAGE for k in range(nr))
    return out


def dump_stats(d):
    """The dump statistics CRIU wrote to @d/stats-dump, by name (times in us)."""
    with open(os.path.join(d, "stats-dump"), "rb") as f:
        b = f.read()
    # IMG_SERVICE_MAGIC, STATS_MAGIC, then one size-prefixed StatsEntry.
    n = struct.unpack_from("<I", b, 8)[0]
    dump = pb_fields(pb_fields(b[12:12 + n])[1][0])
    names = ("freezing_time", "frozen_time", "memdump_time", "memwrite_time",
             "pages_scanned", "pages_skipped_parent", "pages_written")
    return {k: dump.get(i, [0])[0] for i, k in enumerate(names, 1)}


def split_region(pages, lo, npages, hot):
    """(pages of [lo, lo + hot pages), of the rest of the region, outside it)."""
    hot_end, end = lo + hot * PAGE, lo + npages * PAGE
    in_hot = sum(lo <= a < hot_end for a in pages)
    in_cold = sum(hot_end <= a < end for a in pages)
    return in_hot, in_cold, len(pages) - in_hot - in_cold
