# SPDX-License-Identifier: GPL-2.0
"""Running one CRIU zdtm test in one mode, and judging what really ran.

Shared by test/test_zdtm.py (a subset, in the suite) and scripts/zdtm-table
(every zdtm/static test, by hand). Knows nothing of pytest: run() returns an
Outcome whose status is "pass", "fail" or "skip", with the reason.

A tracked mode passes only when zdtm printed its PASS line AND its two
pre-dumps, the dump and the restore (and lazy-pages) ran with our option and
plugin and tracked memory relative to the parent images: with --pre, zdtm
prints "Tracking memory is not available" and exits 0 when the tracking
feature check fails, which must never count as a pass.
"""
import ast
import contextlib
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass

ZDTM_PYTHON = os.environ.get("ZDTM_PYTHON", "/usr/bin/python3")
PLUGIN_NAME = "uffdwp_plugin.so"

# mode id -> zdtm.py run arguments besides -t and -f.
MODES = {
    "plain": [],
    "pre2": ["--uffd-wp-track", "--pre", "2"],
    "pre2-lazy": ["--uffd-wp-track", "--pre", "2", "--lazy-pages"],
}

# zdtm prints this and exits 0 when --pre finds no tracking feature.
NOTHING_RAN = "Tracking memory is not available"


@dataclass
class Outcome:
    status: str  # "pass", "fail" or "skip"
    reason: str  # why it did not pass; "" for a pass
    cmd: list
    ddir: str  # images and logs (removed after a pass or a skip)
    out: str = ""


def env_problem(src, plugin):
    """Why zdtm in our mode cannot run from the CRIU tree src, or None."""
    if not src:
        return ("CRIU_SRC is not set: point it at a CRIU source tree with "
                "criu-patches/ applied and criu built (make criu)")
    zdtm = os.path.join(src, "test", "zdtm.py")
    if not os.path.isfile(zdtm):
        return f"CRIU_SRC={src} is not a CRIU source tree: no test/zdtm.py"
    with open(zdtm) as f:
        if '"--uffd-wp-track"' not in f.read():
            return f"{zdtm} has no --uffd-wp-track option: apply criu-patches/ (make criu)"
    criu = os.path.join(src, "criu", "criu")
    if not os.access(criu, os.X_OK):
        return f"no criu built in CRIU_SRC: {criu} is missing (make criu)"
    with open(criu, "rb") as f:
        if b"needs a plugin that tracks memory" not in f.read():
            return (f"{criu} is not built with criu-patches/ (no memory tracking "
                    "hooks): rebuild it (make criu)")
    if not os.path.exists(plugin):
        return f"{plugin} not built: make CRIU_INCLUDE=<include/criu of that CRIU>"
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


@contextlib.contextmanager
def plugin_installed(tdir, plugin):
    """Our plugin in tdir/plugins (zdtm points CRIU_LIBS_DIR there) for a
    block; whatever was there before is put back."""
    dst = os.path.join(tdir, "plugins", PLUGIN_NAME)
    backup = None
    if os.path.lexists(dst):
        backup = dst + ".uffdwp-test-saved"
        os.rename(dst, backup)
    shutil.copy(plugin, dst)
    try:
        yield tdir
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dst)
        if backup:
            os.rename(backup, dst)


def desc(tdir, name):
    """The test's .desc as a dict ({} when it has none)."""
    try:
        with open(os.path.join(tdir, "zdtm", "static", name + ".desc")) as f:
            text = "\n".join(l for l in f if not l.lstrip().startswith("#"))
        return ast.literal_eval(text.strip() or "{}")
    except (OSError, ValueError, SyntaxError):
        return {}


def flavours(tdir, name):
    return desc(tdir, name).get("flavor", "h ns uns").split()


def flavour(tdir, name):
    """uns where the test allows it (root lacks CAP_SYS_RESOURCE here, which
    the uid-switching h and ns flavours need), else h, else what it has."""
    flavs = flavours(tdir, name)
    for f in ("uns", "h"):
        if f in flavs:
            return f
    return flavs[0]


def _sysctl_path(name):
    return "/proc/sys/" + name.replace(".", "/")


@contextlib.contextmanager
def sysctls(values):
    """Set sysctls for a block; put the old values back whatever happens."""
    old = {}
    try:
        for k, v in values.items():
            with open(_sysctl_path(k)) as f:
                old[k] = f.read().strip()
            if old[k] != str(v):
                with open(_sysctl_path(k), "w") as f:
                    f.write(str(v))
        yield
    finally:
        for k, v in old.items():
            with open(_sysctl_path(k)) as f:
                now = f.read().strip()
            if now != v:
                with open(_sysctl_path(k), "w") as f:
                    f.write(v)


def lazy_sysctls(flav):
    # In uns the restored task is in a child user namespace without
    # CAP_SYS_PTRACE in the initial one and CRIU's userfaultfd() without
    # UFFD_USER_MODE_ONLY is refused unless unprivileged uffd is allowed.
    # (fs.pipe-max-size is only needed by --remote-lazy-pages, not run here.)
    return {"vm.unprivileged_userfaultfd": 1} if flav == "uns" else {}


def tail(text, n=60):
    return "\n".join(text.splitlines()[-n:])


def _grep(path, needle):
    try:
        with open(path, errors="replace") as f:
            return needle in f.read()
    except OSError:
        return False


def stop_holders(uffdwp, roots):
    """A holder outlives a tracked tree that was killed: stop ours."""
    for pid in roots:
        subprocess.run([uffdwp, "track", "stop", "-t", str(pid)], capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL)


def _roots(ddir):
    return [d for d in os.listdir(ddir) if d.isdigit()] if os.path.isdir(ddir) else []


def check_ran(mode, out, ddir):
    """What is missing for the run to count as our mode; [] when nothing."""
    bad = []
    tracked = "--uffd-wp-track" in MODES[mode]
    want = {"dump": 1, "restore": 1}
    if tracked:
        want["pre-dump"] = 2
    if "--lazy-pages" in MODES[mode]:
        want["lazy-pages"] = 1
    for act, n in want.items():
        got = len(re.findall(r"^Run criu %s$" % re.escape(act), out, re.M))
        if got != n:
            bad.append(f"'Run criu {act}' {got} times, expected {n}")
    if not tracked:
        return bad
    roots = _roots(ddir)
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


def run(tdir, name, mode, uffdwp, timeout=300, flav=None, set_sysctls=True):
    """Run zdtm/static/name in mode from tdir (CRIU's test/); an Outcome.
    set_sysctls=False: the caller has set what lazy_sysctls() names."""
    flav = flav or flavour(tdir, name)
    ddir = os.path.join(tdir, "dump", "zdtm", "static", name)
    shutil.rmtree(ddir, ignore_errors=True)
    cmd = [ZDTM_PYTHON, "zdtm.py", "run", "-t", f"zdtm/static/{name}", "-f", flav,
           "--keep-img", "always", "--keep-going"] + MODES[mode]
    what = " ".join(cmd[1:])
    # zdtm re-executes itself through ./zdtm_ct (#!/usr/bin/env python3):
    # the python with protobuf must come first in PATH.
    env = dict(os.environ,
               PATH=os.path.dirname(ZDTM_PYTHON) + ":/usr/local/sbin:/usr/local/bin:"
               "/usr/sbin:/usr/bin:/sbin:/bin")
    want = lazy_sysctls(flav) if "--lazy-pages" in MODES[mode] and set_sysctls else {}
    with sysctls(want):
        p = subprocess.Popen(cmd, cwd=tdir, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
        try:
            out, _ = p.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
            timed_out = True
    out = out.decode(errors="replace")
    if flav != "uns":
        # In uns the holder lives in the test's pid namespace and dies with it.
        stop_holders(uffdwp, _roots(ddir))

    def done(status, reason=""):
        if status != "fail":
            shutil.rmtree(ddir, ignore_errors=True)
        return Outcome(status, reason, cmd, ddir, out)

    if timed_out:
        return done("fail", f"{what}: timed out after {timeout} s (images in {ddir})")
    m = re.search(r"^Skipping zdtm/static/%s \((.*)\)$" % re.escape(name), out, re.M)
    if p.returncode == 0 and m:
        return done("skip", f"zdtm: {m.group(1)}")
    if p.returncode != 0:
        return done("fail", f"{what}: exit {p.returncode} (images and logs in {ddir})")
    if NOTHING_RAN in out:
        return done("fail", f"{what}: zdtm ran nothing ({NOTHING_RAN}) though it exited 0")
    if not re.search(r"^=+ Test zdtm/static/%s PASS =+$" % re.escape(name), out, re.M) \
            or "ALL TEST(S) PASSED (TOTAL 1/SKIPPED 0)" not in out:
        return done("fail", f"{what}: exit 0 but no PASS for the test")
    if "crfail" in desc(tdir, name).get("flags", "").split():
        # The test passes when CRIU refuses to dump it: nothing is tracked
        # or restored, so there is nothing of our mode to check.
        return done("pass", "crfail: zdtm expects the dump to fail, and it did")
    bad = check_ran(mode, out, ddir)
    if bad:
        return done("fail", f"{what}: zdtm passed but not in our mode: " + "; ".join(bad)
                    + f" (images in {ddir})")
    return done("pass")
