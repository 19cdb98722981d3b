# SPDX-License-Identifier: GPL-2.0
"""CRIU's own zdtm suite in our mode: --uffd-wp-track with pre-dumps.

Runs `zdtm.py run --uffd-wp-track --pre 2` (and the same with
`--lazy-pages`) from the CRIU source tree in $CRIU_SRC, one zdtm call per
(test, mode), over the memory-heavy static tests listed in ZDTM_TESTS.
$CRIU_SRC must have criu-patches/ applied (0010 adds zdtm's --uffd-wp-track)
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
import ast
import contextlib
import os
import re
import shutil
import signal
import subprocess

import pytest

from helpers import BUILD, UFFDWP

PLUGIN = os.path.join(BUILD, "uffdwp_plugin.so")
PLUGIN_NAME = "uffdwp_plugin.so"
ZDTM_PYTHON = os.environ.get("ZDTM_PYTHON", "/usr/bin/python3")
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
    "memfd00", "memfd01", "memfd02", "memfd03", "memfd04", "memfd05",
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

# mode id -> zdtm.py run arguments besides -t and -f.
MODES = {
    "pre2": ["--uffd-wp-track", "--pre", "2"],
    "pre2-lazy": ["--uffd-wp-track", "--pre", "2", "--lazy-pages"],
}

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

# zdtm prints this and exits 0 when --pre finds no tracking feature.
NOTHING_RAN = "Tracking memory is not available"


def _skip_reason_env():
    """Why this module cannot run at all here, or None."""
    src = os.environ.get("CRIU_SRC")
    if not src:
        return ("CRIU_SRC is not set: point it at a CRIU source tree with "
                "criu-patches/ applied and criu built")
    zdtm = os.path.join(src, "test", "zdtm.py")
    if not os.path.isfile(zdtm):
        return f"CRIU_SRC={src} is not a CRIU source tree: no test/zdtm.py"
    with open(zdtm) as f:
        if '"--uffd-wp-track"' not in f.read():
            return (f"{zdtm} has no --uffd-wp-track option: apply criu-patches/ "
                    "(0010-zdtm-...)")
    criu = os.path.join(src, "criu", "criu")
    if not os.access(criu, os.X_OK):
        return f"no criu built in CRIU_SRC: {criu} is missing (make -C {src})"
    with open(criu, "rb") as f:
        if b"needs a plugin that tracks memory" not in f.read():
            return (f"{criu} is not built with criu-patches/ (no memory tracking "
                    "hooks): rebuild it")
    if not os.path.exists(PLUGIN):
        return f"{PLUGIN} not built: make CRIU_INCLUDE=<include/criu of that CRIU>"
    if os.geteuid() != 0:
        return "zdtm needs root"
    if not os.access(ZDTM_PYTHON, os.X_OK):
        return f"no {ZDTM_PYTHON} (set ZDTM_PYTHON to a python3 with protobuf and yaml)"
    r = subprocess.run([ZDTM_PYTHON, "-c", "import google.protobuf, yaml"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode:
        return (f"{ZDTM_PYTHON} cannot import google.protobuf and yaml "
                "(python3-protobuf, python3-yaml)")
    r = subprocess.run([criu, "check", "--feature", "uffd-wp-track"], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    if r.returncode:
        out = (r.stdout + r.stderr).strip().splitlines()
        return (f"{criu} check --feature uffd-wp-track: "
                f"{out[-1] if out else 'exit %d' % r.returncode}")
    return None


@pytest.fixture(scope="module")
def zdtm_env():
    """$CRIU_SRC/test with our plugin in test/plugins; removed afterwards."""
    why = _skip_reason_env()
    if why:
        pytest.skip(why)
    tdir = os.path.join(os.environ["CRIU_SRC"], "test")
    dst = os.path.join(tdir, "plugins", PLUGIN_NAME)
    backup = None
    if os.path.lexists(dst):
        backup = dst + ".uffdwp-test-saved"
        os.rename(dst, backup)
    shutil.copy(PLUGIN, dst)
    try:
        yield tdir
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dst)
        if backup:
            os.rename(backup, dst)


def _desc(tdir, name):
    try:
        with open(os.path.join(tdir, "zdtm", "static", name + ".desc")) as f:
            text = "\n".join(l for l in f if not l.lstrip().startswith("#"))
        return ast.literal_eval(text.strip() or "{}")
    except (OSError, ValueError, SyntaxError):
        return {}


def _flavour(tdir, name):
    """uns where the test allows it (see HOOKS.md), else h, else what it has."""
    flavs = _desc(tdir, name).get("flavor", "h ns uns").split()
    for f in ("uns", "h"):
        if f in flavs:
            return f
    return flavs[0]


def _sysctl(name):
    with open("/proc/sys/" + name.replace(".", "/")) as f:
        return f.read().strip()


def _set_sysctl(name, value):
    with open("/proc/sys/" + name.replace(".", "/"), "w") as f:
        f.write(str(value))


@contextlib.contextmanager
def _sysctls(values):
    """Set sysctls for a block; put the old values back whatever happens."""
    old = {}
    try:
        for k, v in values.items():
            old[k] = _sysctl(k)
            if old[k] != str(v):
                _set_sysctl(k, v)
        yield
    finally:
        for k, v in old.items():
            if _sysctl(k) != v:
                _set_sysctl(k, v)


def _lazy_sysctls(flavour):
    # In uns the restored task is in a child user namespace without
    # CAP_SYS_PTRACE in the initial one and CRIU's userfaultfd() without
    # UFFD_USER_MODE_ONLY is refused unless unprivileged uffd is allowed.
    # (fs.pipe-max-size is only needed by --remote-lazy-pages, not run here.)
    return {"vm.unprivileged_userfaultfd": 1} if flavour == "uns" else {}


def _tail(text, n=60):
    return "\n".join(text.splitlines()[-n:])


def _grep(path, needle):
    try:
        with open(path, errors="replace") as f:
            return needle in f.read()
    except OSError:
        return False


def _stop_holders(roots):
    """A holder outlives a tracked tree that was killed (HOOKS.md): stop ours."""
    for pid in roots:
        subprocess.run([UFFDWP, "track", "stop", "-t", str(pid)], capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL)


def _check_ran(name, mode, out, ddir):
    """Everything that shows the run really was two pre-dumps, dump and restore
    with our option and plugin; returns a list of what is missing."""
    bad = []
    want = {"pre-dump": 2, "dump": 1, "restore": 1}
    if "lazy" in mode:
        want["lazy-pages"] = 1
    for act, n in want.items():
        got = len(re.findall(r"^Run criu %s$" % re.escape(act), out, re.M))
        if got != n:
            bad.append(f"'Run criu {act}' {got} times, expected {n}")
    roots = [d for d in os.listdir(ddir) if d.isdigit()] if os.path.isdir(ddir) else []
    if len(roots) != 1:
        bad.append(f"expected one image directory in {ddir}, found {roots}")
        return bad
    it = os.path.join(ddir, roots[0])
    for i, act in ((1, "pre-dump"), (2, "pre-dump"), (3, "dump")):
        if not _grep(os.path.join(it, str(i), act + ".cropt"), "--uffd-wp-track"):
            bad.append(f"{i}/{act} ran without --uffd-wp-track")
        if not _grep(os.path.join(it, str(i), act + ".log"), 'Plugin "uffdwp"'):
            bad.append(f"{i}/{act}: the uffdwp plugin was not loaded")
    # Later iterations must have asked the tracker (not dumped everything),
    # relative to the images before them.
    for i, act in ((2, "pre-dump"), (3, "dump")):
        log = os.path.join(it, str(i), act + ".log")
        if not _grep(log, "uffdwp: criu: scan gen"):
            bad.append(f"{i}/{act}: no tracker scan (memory was not tracked)")
        if _grep(log, "parent images are not the ones tracking"):
            bad.append(f"{i}/{act}: tracking was not relative to the parent images "
                       "(dumped whole)")
    return bad


def _run_zdtm(tdir, name, mode):
    flavour = _flavour(tdir, name)
    test = f"zdtm/static/{name}"
    ddir = os.path.join(tdir, "dump", "zdtm", "static", name)
    shutil.rmtree(ddir, ignore_errors=True)
    cmd = [ZDTM_PYTHON, "zdtm.py", "run", "-t", test, "-f", flavour,
           "--keep-img", "always", "--keep-going"] + MODES[mode]
    # zdtm re-executes itself through ./zdtm_ct (#!/usr/bin/env python3):
    # the python with protobuf must come first in PATH.
    env = dict(os.environ,
               PATH=os.path.dirname(ZDTM_PYTHON) + ":/usr/local/sbin:/usr/local/bin:"
               "/usr/sbin:/usr/bin:/sbin:/bin")
    sysctls = _lazy_sysctls(flavour) if "lazy" in mode else {}
    with _sysctls(sysctls):
        p = subprocess.Popen(cmd, cwd=tdir, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
        try:
            out, _ = p.communicate(timeout=TEST_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
            out = out.decode(errors="replace")
            pytest.fail(f"{' '.join(cmd)}: timed out after {TEST_TIMEOUT} s "
                        f"(images in {ddir})\n{_tail(out)}")
    out = out.decode(errors="replace")
    roots = [d for d in os.listdir(ddir) if d.isdigit()] if os.path.isdir(ddir) else []
    if flavour != "uns":
        # In uns the holder lives in the test's pid namespace and dies with it.
        _stop_holders(roots)
    return cmd, p.returncode, out, ddir


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", ZDTM_TESTS)
def test_zdtm(zdtm_env, name, mode):
    reason = CANNOT_RUN.get((name, mode)) or CANNOT_RUN.get(name)
    if reason:
        pytest.skip(f"cannot run here: {reason}")
    cmd, rc, out, ddir = _run_zdtm(zdtm_env, name, mode)
    what = " ".join(cmd[1:])
    m = re.search(r"^Skipping zdtm/static/%s \((.*)\)$" % re.escape(name), out, re.M)
    if rc == 0 and m:
        shutil.rmtree(ddir, ignore_errors=True)
        pytest.skip(f"zdtm: {m.group(1)}")
    if rc != 0:
        pytest.fail(f"{what}: exit {rc} (images and logs in {ddir})\n{_tail(out)}")
    if NOTHING_RAN in out:
        pytest.fail(f"{what}: zdtm ran nothing ({NOTHING_RAN}) though it exited 0")
    if not re.search(r"^=+ Test zdtm/static/%s PASS =+$" % re.escape(name), out, re.M) \
            or "ALL TEST(S) PASSED (TOTAL 1/SKIPPED 0)" not in out:
        pytest.fail(f"{what}: exit 0 but no PASS for the test\n{_tail(out)}")
    bad = _check_ran(name, mode, out, ddir)
    if bad:
        pytest.fail(f"{what}: zdtm passed but not in our mode: " + "; ".join(bad)
                    + f" (images in {ddir})")
    shutil.rmtree(ddir, ignore_errors=True)
