# SPDX-License-Identifier: GPL-2.0
"""Container runtimes with CRIU, criu-patches/ and the uffdwp plugin.

runc 1.1.5 (Debian) runs `criu swrk` with a FEATURE_CHECK request for
mem_track before every `runc checkpoint --pre-dump`, and hands CRIU
/etc/criu/runc.conf as the configuration file of every request (the
series' "check, rpc: answer mem_track" makes the feature check read it). The tests write that file for their
duration and put /etc/criu back as it was. Containers are OCI bundles
made here: busybox-static as the root, test/workloads/rt_wl (static) as
init, holding a few hundred MiB and rewriting a known part of them all
the time; it checks every page on SIGUSR2 and answers on its stdout,
a pipe. podman runs the same workload from an image made with
`podman import` (no registry).
"""
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from helpers import kill_tree, stop_holder, workload_path
from rt_helpers import criu_config, dump_stats, pagemap_pages, read_line, split_region
from test_criu import PLUGIN, criu  # noqa: F401 (the fixture)

pytestmark = pytest.mark.timeout(300)

BUSYBOX = "/bin/busybox"  # busybox-static
MIB, HOT = 256, 5000  # rt_wl's memory, and the pages it keeps rewriting
TUNABLES = "GLIBC_TUNABLES=glibc.pthread.rseq=0"


def _static(path):
    """Whether @path is an ELF file with no program interpreter."""
    with open(path, "rb") as f:
        b = f.read(1 << 16)
    return b[:4] == b"\x7fELF" and b"/ld-linux" not in b


def make_rootfs(root):
    """A container root: busybox-static and rt_wl, nothing else."""
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy(BUSYBOX, os.path.join(root, "bin", "busybox"))
    os.symlink("busybox", os.path.join(root, "bin", "sh"))
    shutil.copy(workload_path("rt_wl"), os.path.join(root, "rt_wl"))


def make_bundle(runc, d, args):
    """An OCI bundle in @d running @args as init, stdio as given at run time."""
    os.makedirs(d)
    make_rootfs(os.path.join(d, "rootfs"))
    subprocess.run([runc, "spec", "--bundle", d], check=True, capture_output=True)
    path = os.path.join(d, "config.json")
    with open(path) as f:
        spec = json.load(f)
    spec["process"]["terminal"] = False
    spec["process"]["args"] = args
    spec["process"]["env"].append(TUNABLES)
    with open(path, "w") as f:
        json.dump(spec, f, indent=1)
    return d


def _tail(text, n=12):
    return "\n".join((text or "").strip().splitlines()[-n:])


@pytest.fixture(scope="session")
def runc_bin(tmp_path_factory):
    """runc, once seen to run a container here; else a skip saying why."""
    runc = shutil.which("runc")
    if not runc:
        pytest.skip("no runc on PATH (Debian package runc)")
    if not os.path.exists(BUSYBOX) or not _static(BUSYBOX):
        pytest.skip(f"no static {BUSYBOX} for the container root (Debian package busybox-static)")
    if not _static(workload_path("rt_wl")):
        pytest.skip(f"{workload_path('rt_wl')} is not built as a static binary")
    d = tmp_path_factory.mktemp("runc-probe")
    make_bundle(runc, str(d / "b"), ["/bin/sh", "-c", "true"])
    r = subprocess.run([runc, "--root", str(d / "state"), "run", "--bundle", str(d / "b"),
                        f"uffdwp-probe-{os.getpid()}"], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    if r.returncode:
        pytest.skip(f"runc cannot run a container here: {_tail(r.stderr, 1)}")
    return runc


class Container:
    """An rt_wl container run by runc with a state directory of its own."""

    def __init__(self, runc, criu_path, base, name):
        self.base = base
        self.id = f"uffdwp-{os.getpid()}-{name}"
        self.runc = [runc, "--root", str(base / "runc-state"), "--criu", criu_path]
        self.bundle = make_bundle(runc, str(base / "bundle"),
                                  ["/rt_wl", str(MIB), str(HOT)])
        self.procs = []
        self.pids = []
        self.out = self._start(["run", "-d", "--bundle", self.bundle, self.id])
        ready = read_line(self.out, 60, "rt_wl ready").split()
        assert ready[0] == "ready", ready
        self.addr, self.pages, self.hot = int(ready[1], 16), int(ready[2]), int(ready[3])

    def _start(self, args):
        """Run `runc ARGS` with the container's stdio on fresh pipes; returns
        the read end of its stdout once runc itself has exited."""
        p = subprocess.Popen(self.runc + args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.procs.append(p)
        try:
            rc = p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        if rc:
            # runc is gone; the container (if any) still holds the pipes.
            os.set_blocking(p.stderr.fileno(), False)
            err = p.stderr.read() or b""
            raise AssertionError(f"runc {' '.join(args)}: exit {rc}\n{_tail(err.decode())}")
        self.pids.append(self.pid())
        return p.stdout

    def run(self, *args, check=True):
        r = subprocess.run(self.runc + list(args), capture_output=True, text=True,
                           timeout=180, stdin=subprocess.DEVNULL)
        if check:
            assert r.returncode == 0, f"runc {' '.join(args)}: exit {r.returncode}\n" \
                                      f"{_tail(r.stderr)}"
        return r

    def pid(self):
        r = self.run("state", self.id)
        return json.loads(r.stdout)["pid"]

    def checkpoint(self, name, parent=None, pre_dump=False):
        """runc checkpoint into base/NAME (work directory base/NAME.work)."""
        args = ["checkpoint", "--image-path", str(self.base / name),
                "--work-path", str(self.base / f"{name}.work")]
        if pre_dump:
            args.append("--pre-dump")
        if parent:
            args += ["--parent-path", f"../{parent}"]
        t = time.time()
        r = self.run(*args, self.id, check=False)
        took = time.time() - t
        log = self.base / f"{name}.work" / "dump.log"
        assert r.returncode == 0, f"runc checkpoint {name}: exit {r.returncode}\n" \
                                  f"{_tail(r.stderr)}\n{_tail(log.read_text() if log.exists() else '')}"
        return self.base / name, took

    def restore(self, name):
        self.out = self._start(["restore", "-d", "--image-path", str(self.base / name),
                                "--work-path", str(self.base / f"{name}.restore"),
                                "--bundle", self.bundle, self.id])

    def verify(self):
        """rt_wl's own check of every page."""
        self.run("kill", self.id, "USR2")
        return read_line(self.out, 60, "rt_wl's check")

    def close(self):
        for pid in self.pids:
            stop_holder(pid)
        self.run("kill", self.id, "KILL", check=False)
        self.run("delete", "--force", self.id, check=False)
        for pid in self.pids:
            kill_tree(pid)
        for p in self.procs:
            for f in (p.stdin, p.stdout, p.stderr):
                with contextlib.suppress(OSError):
                    f.close()


@pytest.fixture
def plugdir(tmp_path):
    d = tmp_path / "plugins"
    d.mkdir()
    shutil.copy(PLUGIN, d / "uffdwp_plugin.so")
    return str(d)


@pytest.fixture
def container(runc_bin, criu, tmp_path):
    made = []

    def make(name="c"):
        c = Container(runc_bin, criu, tmp_path, name)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def _assert_delta(c, d, what):
    """The images in @d hold rt_wl's rewritten pages, only those of its
    region, and next to nothing else."""
    in_hot, in_cold, outside = split_region(pagemap_pages(str(d)), c.addr, c.pages, c.hot)
    assert in_cold == 0, f"{what}: {in_cold} unchanged pages of the region dumped again"
    # About a second of writes at 3000-5000 pages a second between two runs.
    assert in_hot >= c.hot // 4, f"{what}: only {in_hot} of {c.hot} rewritten pages"
    # The seed record of the hot pages, the stack, libc's data: a few pages.
    assert outside < 64, f"{what}: {outside} pages outside the region"


@pytest.mark.parametrize("pages", ["raw", "plugin-pages"])
def test_runc_migrate(container, plugdir, pages):
    """runc checkpoint --pre-dump twice, the final checkpoint on top, runc
    restore: each delta holds only what rt_wl rewrote, and the restored
    container finds every page as it left it."""
    # The recommended configuration (docs/runtimes.md); network-lock skip
    # keeps iptables-restore out of the frozen time (the series'
    # config fix for RPC lets runc.conf say it).
    conf = ["uffd-wp-track", f"libdir {plugdir}", "network-lock skip"]
    if pages != "raw":
        conf.append("plugin-pages")
    with criu_config({"runc.conf": conf}):
        c = container()
        p1, _ = c.checkpoint("p1", pre_dump=True)
        full = split_region(pagemap_pages(str(p1)), c.addr, c.pages, c.hot)
        assert full[0] + full[1] == c.pages, f"first pre-dump: {full} of {c.pages}"
        time.sleep(1)
        p2, _ = c.checkpoint("p2", parent="p1", pre_dump=True)
        _assert_delta(c, p2, "second pre-dump")
        time.sleep(1)
        assert c.verify().startswith("ok"), "rt_wl found its memory bad before the dump"
        d, took = c.checkpoint("d", parent="p2")
        _assert_delta(c, d, "checkpoint")
        for x in (p1, p2, d):
            names = os.listdir(x)
            if pages == "raw":
                assert any(n.startswith("pages-") for n in names), names
            else:
                assert not any(n.startswith("pages-") for n in names), names
                assert any(n.startswith("uffdwp-pages-") for n in names), names
        st = dump_stats(str(d) + ".work")
        print(f"runc checkpoint ({pages}): {took * 1000:.0f} ms, frozen "
              f"{st['frozen_time'] / 1000:.1f} ms, {st['pages_written']} pages written")
        c.restore("d")
        ans = c.verify()
        assert ans.startswith("ok"), f"restored rt_wl: {ans}"


def test_runc_refused_without_plugin(container, tmp_path):
    """Tracking asked for, but no plugin where runc.conf says: the feature
    check says no (and why), runc refuses to pre-dump, the container runs on."""
    empty = tmp_path / "noplugins"
    empty.mkdir()
    with criu_config({"runc.conf": ["uffd-wp-track", f"libdir {empty}"]}):
        c = container()
        r = c.run("--debug", "checkpoint", "--pre-dump", "--image-path", str(tmp_path / "p1"),
                  c.id, check=False)
        assert r.returncode != 0
        assert "CRIU is missing features" in r.stderr, _tail(r.stderr)
        assert "mem_track:false" in r.stderr and \
            "needs a plugin that tracks memory, none was loaded from " + str(empty) in r.stderr, \
            _tail(r.stderr)
        assert c.verify().startswith("ok")


def test_runc_refused_without_option(container, tmp_path, plugdir):
    """No uffd-wp-track anywhere: on a kernel without soft-dirty the answer
    is the old one, no (a kernel with soft-dirty says yes, as before)."""
    with criu_config({"runc.conf": [f"libdir {plugdir}"]}):
        c = container()
        r = c.run("--debug", "checkpoint", "--pre-dump", "--image-path", str(tmp_path / "p1"),
                  c.id, check=False)
        if r.returncode == 0:
            pytest.skip("this kernel has soft-dirty: runc pre-dumps without the option")
        # The old answer, and as before no reason with it.
        assert "mem_track:false" in r.stderr and "cr_errmsg" not in r.stderr, _tail(r.stderr)
        assert c.verify().startswith("ok")


@pytest.fixture(scope="session")
def podman_bin(runc_bin):
    podman = shutil.which("podman")
    if not podman:
        pytest.skip("no podman on PATH (Debian package podman)")
    return podman


class Podman:
    """podman with storage, run and temporary directories of the test's own,
    runc as the runtime and our CRIU first in PATH (podman checks its
    version, runc runs `criu` from PATH)."""

    def __init__(self, podman, criu_path, base):
        self.base = base
        # podman refuses a runroot of more than 50 characters: a short one
        # of its own, removed in close().
        self.runroot = tempfile.mkdtemp(prefix="uffdwp-pr.", dir="/tmp")
        self.cmd = [podman, "--root", str(base / "storage"), "--runroot", self.runroot,
                    "--tmpdir", str(base / "tmp"), "--cgroup-manager", "cgroupfs",
                    "--events-backend", "file", "--runtime", "runc"]
        self.env = dict(os.environ, PATH=os.path.dirname(criu_path) + ":" + os.environ["PATH"])
        self.names = []
        self.images = []
        # containers/image keeps a blob cache there whatever --root says.
        self.made_cache = not os.path.exists("/var/lib/containers")

    def __call__(self, *args, check=True, timeout=180):
        r = subprocess.run(self.cmd + list(args), capture_output=True, text=True, env=self.env,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if check:
            assert r.returncode == 0, f"podman {' '.join(args)}: exit {r.returncode}\n" \
                                      f"{_tail(r.stderr)}"
        return r

    def logs(self, name, want, timeout=60):
        """The lines of @name's output once one starts with @want."""
        end = time.time() + timeout
        while time.time() < end:
            lines = self("logs", name).stdout.splitlines()
            if any(x.startswith(want) for x in lines):
                return lines
            time.sleep(0.2)
        raise AssertionError(f"no '{want}' in the logs of {name}: {lines[-5:]}")

    def close(self):
        for n in self.names:
            r = self("inspect", "--format", "{{.State.Pid}}", n, check=False)
            if r.returncode == 0 and r.stdout.strip().isdigit() and int(r.stdout):
                stop_holder(int(r.stdout))
            self("rm", "--force", n, check=False)
        for i in self.images:
            self("rmi", "--force", i, check=False)
        # containers/storage leaves its overlay directory mounted on itself.
        with open("/proc/mounts") as f:
            mnts = [line.split()[1] for line in f]
        for m in reversed(mnts):
            if m.startswith(str(self.base) + "/"):
                subprocess.run(["umount", m], capture_output=True)
        if self.made_cache:
            shutil.rmtree("/var/lib/containers", ignore_errors=True)
        for m in reversed(mnts):
            if m.startswith(self.runroot + "/"):
                subprocess.run(["umount", m], capture_output=True)
        shutil.rmtree(self.runroot, ignore_errors=True)


@pytest.fixture
def podman(podman_bin, criu, tmp_path):
    p = Podman(podman_bin, criu, tmp_path)
    yield p
    p.close()


def _unpack(archive, d):
    """A podman checkpoint archive (zstd, gzip or plain tar) into @d."""
    os.makedirs(d)
    subprocess.run(["tar", "-xf", archive, "-C", d], check=True, capture_output=True)
    return d


def test_podman_migrate(podman, plugdir, tmp_path):
    """podman container checkpoint --pre-checkpoint, then --with-previous,
    both exported; the container removed, restored from the archives
    (--import, --import-previous), and rt_wl finds every page as it was."""
    root = tmp_path / "rootfs"
    make_rootfs(str(root))
    subprocess.run(["tar", "-cf", str(tmp_path / "rootfs.tar"), "-C", str(root), "."],
                   check=True)
    image = f"localhost/uffdwp-rt:{os.getpid()}"
    podman.images.append(image)
    podman("import", str(tmp_path / "rootfs.tar"), image)
    name = f"uffdwp-{os.getpid()}"
    podman.names.append(name)
    with criu_config({"runc.conf": ["uffd-wp-track", f"libdir {plugdir}"]}):
        podman("run", "-d", "--name", name, "--network", "none",
               "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096",
               "-e", TUNABLES, image, "/rt_wl", str(MIB), str(HOT))
        ready = podman.logs(name, "ready")[0].split()
        addr, pages, hot = int(ready[1], 16), int(ready[2]), int(ready[3])
        pre, final = str(tmp_path / "pre.tar.zst"), str(tmp_path / "final.tar.zst")
        podman("container", "checkpoint", "--pre-checkpoint", "--export", pre, name)
        time.sleep(1)
        r = podman("container", "checkpoint", "--with-previous", "--export", final,
                   "--print-stats", name)
        stats = json.loads(r.stdout[r.stdout.index("{"):])
        crit = stats["container_statistics"][0]["criu_statistics"]
        print(f"podman checkpoint --with-previous: {stats['podman_checkpoint_duration'] / 1000:.0f}"
              f" ms, frozen {crit['frozen_time'] / 1000:.1f} ms, {crit['pages_written']} pages")
        # The pre-checkpoint holds all of rt_wl's memory, the checkpoint
        # only the pages it rewrote since.
        for archive, sub in ((pre, "pre-checkpoint"), (final, "checkpoint")):
            d = _unpack(archive, archive + ".d")
            got = split_region(pagemap_pages(os.path.join(d, sub)), addr, pages, hot)
            if sub == "pre-checkpoint":
                assert got[0] + got[1] == pages, f"pre-checkpoint: {got} of {pages}"
            else:
                assert got[1] == 0 and hot // 4 <= got[0] <= hot and got[2] < 64, got
        podman("rm", "--force", name)
        podman("container", "restore", "--import", final, "--import-previous", pre)
        podman("kill", "--signal", "USR2", name)
        lines = podman.logs(name, "ok")
        assert not any(x.startswith("bad") for x in lines), lines[-3:]
