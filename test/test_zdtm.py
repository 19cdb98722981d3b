# SPDX-License-Identifier: GPL-2.0
"""CRIU's own zdtm suite in our mode: --uffd-wp-track with pre-dumps.

Runs `zdtm.py run --uffd-wp-track --pre 2` (and the same with
`--lazy-pages`) from the CRIU source tree in $CRIU_SRC, one zdtm call per
(test, mode), over the memory-heavy static tests listed in ZDTM_TESTS.
$CRIU_SRC must have criu-patches/ applied (the series adds zdtm's --uffd-wp-track)
and criu built there (zdtm runs ../criu/criu). Our plugin is copied into
$CRIU_SRC/test/plugins (zdtm points CRIU_LIBS_DIR there) for the session and
removed afterwards. Needs root. Everything skips, saying what is missing,
when any of that is not there.

zdtm's own skips ("no flavors", "lazy pages are not supported", a missing
kernel feature) become pytest skips with zdtm's reason. A zdtm run that did
not do two pre-dumps, a dump and a restore with our option and plugin fails,
whatever zdtm's exit code says (with --pre, zdtm prints "Tracking memory is
not available" and exits 0 when the tracking feature check fails).
"""
import os

import pytest

import zdtm_run
from helpers import BUILD, UFFDWP

PLUGIN = os.path.join(BUILD, "uffdwp_plugin.so")
TEST_TIMEOUT = int(os.environ.get("ZDTM_TEST_TIMEOUT", "300"))  # s per zdtm call

pytestmark = pytest.mark.timeout(TEST_TIMEOUT + 60)

# zdtm/static tests that exercise memory, and the files, sockets and
# processes around it.
ZDTM_TESTS = [
    # mappings: anon, file, private/shared, protections, growing, remapped
    "maps00", "maps01", "maps02", "maps04", "maps05", "maps06", "maps09",
    "maps10", "maps11", "maps12", "maps_file_prot", "mprotect00", "mem-touch",
    "grow_map", "grow_map02", "grow_map03", "mtime_mmap", "thp_disable",
    "uffd-events", "mlock_setuid",
    # shared memory: anon shared, SysV, memfd
    "shm", "shm-mp", "shm-unaligned", "shm-hugetlb", "shmemfd", "shmemfd-priv",
    "memfd00", "memfd01", "memfd02", "memfd02-hugetlb", "memfd03", "memfd04", "memfd05",
    "sem", "msgque", "ipc_namespace",
    # processes and threads: fork, COW, pthreads, stacks, vdso
    "cow00", "cow01", "pthread00", "pthread01", "pthread02", "pstree",
    "session00", "session01", "sigaltstack", "vdso00", "vdso01", "vdso02",
    "vdso-proxy",
    # files around the memory: mapped and unlinked files, AIO rings
    "file_shared", "file_append", "unlink_mmap00", "unlink_mmap01",
    "unlink_mmap02", "unlink_fstat00", "unlink_fstat01", "write_read00",
    "write_read01", "write_read02", "write_read10", "aio00", "aio01", "fd",
    "fd01",
    # sockets and pipes (buffers in flight), packet rings mapped in memory
    "sockets00", "sockets01", "sockets02", "sockets_spair", "sockets_dgram",
    "socket_queues", "socket_listen", "socket-tcp", "socket_udp", "socket_aio",
    "packet_sock_mmap", "pipe00", "pipe01", "pipe02", "fifo", "fifo_ro",
]
# Not listed: vfork00 (zdtm 'crfail': passes when CRIU refuses to dump a
# vfork in progress, so it says nothing about memory), get_smaps_bits (a
# helper, not a zdtm test: no make rule).

# The tracked modes (test/zdtm_run.py); `make zdtm` also runs "plain".
MODES = ["pre2", "pre2-lazy"]

# Tests that cannot run on this machine, with the reason: test -> reason for
# every mode, or (test, mode) -> reason for one mode. They are reported as
# skipped without calling zdtm.
_RLIMIT = ("only runs in the 'h' flavour as a non-root uid, and CRIU dumping another uid's "
           "task needs CAP_SYS_RESOURCE, which root lacks on this machine: 'Error "
           "(criu/cr-dump.c:388): Can't get rlimit 0: Operation not permitted' (plain CRIU too)")
CANNOT_RUN = {
    "maps12": _RLIMIT,
    "socket-tcp": _RLIMIT,
    "mlock_setuid": ("setuid()s to a non-root uid ('h ns' only), so the same as "
                     "maps12: " + _RLIMIT),
    "pthread02": ("zdtm's root for the uns flavour lacks libgcc_s.so.1, which "
                  "pthread_exit() dlopen()s: the test dies at start, before any "
                  "CRIU call (plain zdtm too; 'noauto' upstream)"),
}



@pytest.fixture(scope="module")
def zdtm_env():
    """$CRIU_SRC/test with our plugin in test/plugins; removed afterwards."""
    why = zdtm_run.env_problem(os.environ.get("CRIU_SRC"), PLUGIN)
    if why:
        pytest.skip(why)
    with zdtm_run.plugin_installed(os.path.join(os.environ["CRIU_SRC"], "test"),
                                   PLUGIN) as tdir:
        yield tdir


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ZDTM_TESTS)
def test_zdtm(zdtm_env, name, mode):
    reason = CANNOT_RUN.get((name, mode)) or CANNOT_RUN.get(name)
    if reason:
        pytest.skip(f"cannot run here: {reason}")
    o = zdtm_run.run(zdtm_env, name, mode, UFFDWP, timeout=TEST_TIMEOUT)
    if o.status == "skip":
        pytest.skip(o.reason)
    if o.status == "fail":
        pytest.fail(o.reason + "\n" + zdtm_run.tail(o.out))
