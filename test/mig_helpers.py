# SPDX-License-Identifier: GPL-2.0
"""Two hosts on one machine and `uffdwp migrate` between them: the pieces
test/test_migrate.py and scripts/bench-migrate share (no pytest here)."""
import json
import os
import signal
import subprocess
import time

from helpers import UFFDWP, descendants, kill_tree, read_file, stop_holder, wait_for, workload_path

PORT = 2700


class Hosts:
    """Two network namespaces, src and dst, with 10.79.X.1 and .2 on a veth."""

    def __init__(self):
        tag = f"{os.getpid() % 10000}-{int(time.time() * 1000) % 100000}"
        self.src, self.dst = f"uwp-s{tag}", f"uwp-d{tag}"
        n = os.getpid() % 250 + 1
        self.src_ip, self.dst_ip = f"10.79.{n}.1", f"10.79.{n}.2"
        self.made = []
        veth = f"uwv{tag}"[:15]
        try:
            for ns in (self.src, self.dst):
                self._ip("netns", "add", ns)
                self.made.append(ns)
            self._ip("link", "add", veth + "a", "type", "veth", "peer", "name", veth + "b")
            self._ip("link", "set", veth + "a", "netns", self.src)
            self._ip("link", "set", veth + "b", "netns", self.dst)
            for ns, dev, ip in ((self.src, veth + "a", self.src_ip),
                                (self.dst, veth + "b", self.dst_ip)):
                self._ip("-n", ns, "addr", "add", ip + "/24", "dev", dev)
                self._ip("-n", ns, "link", "set", dev, "up")
                self._ip("-n", ns, "link", "set", "lo", "up")
            self.dev = veth + "a"
        except Exception:
            self.close()
            raise

    @staticmethod
    def _ip(*args):
        r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
        if r.returncode:
            raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")

    def on(self, ns):
        return ["nsenter", f"--net=/run/netns/{ns}"]

    def limit(self, rate):
        """Limit what the source sends to @rate (tc syntax, e.g. '40mbit')."""
        r = subprocess.run(["tc", "-n", self.src, "qdisc", "add", "dev", self.dev, "root",
                            "tbf", "rate", rate, "burst", "64kb", "latency", "400ms"],
                           capture_output=True, text=True, timeout=30)
        if r.returncode:
            raise RuntimeError(f"cannot limit the link with tc: {r.stderr.strip()}")

    def close(self):
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


class Tree:
    """A workload tree on the source host, in a pid namespace of its own."""

    def __init__(self, hosts, tmp_path, workload, args):
        self.wl = tmp_path / "wl"
        self.wl.mkdir()
        flags = [str(a) for a in args if str(a).startswith("-")]
        rest = [str(a) for a in args if not str(a).startswith("-")]
        cmd = hosts.on(hosts.src) + ["unshare", "-pf", "setsid", workload_path(workload),
                                     *flags, str(self.wl), *rest]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     env=dict(os.environ, GLIBC_TUNABLES="glibc.pthread.rseq=0"))
        # Filling takes long where guest memory is touched for the first
        # time: 37-52 s for 4 GiB here after the page cache was dropped.
        pages = max([int(a) for a in rest if a.isdigit()] or [0])
        ready = wait_for(lambda: read_file(self.wl / "ready"), f"{workload} ready",
                         timeout=30 + pages / 5000)
        self.root = int(ready.split()[0])
        self.pids = [self.root]

    def alive(self):
        try:
            with open(f"/proc/{self.root}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in "ZXtT"
        except OSError:
            return False

    def close(self, restored=None):
        for pid in [restored, self.root]:
            if pid:
                stop_holder(pid)
                kill_tree(pid)
        self.proc.kill()
        self.proc.wait(timeout=10)


class Migration:
    def __init__(self, hosts, criu, plugdir, tmp_path):
        self.hosts, self.criu, self.plugdir, self.base = hosts, criu, plugdir, tmp_path
        self.dst_dir = tmp_path / "dst"
        self.dest = None
        self.restored = None

    def start_dest(self, extra=(), prefix=(), dst_dir=None, timeout=120, criu=None):
        """timeout: the destination's --timeout, and how long finish_dest()
        waits for it. criu: another CRIU for the destination."""
        self.dst_dir = dst_dir or self.dst_dir
        self.dest_timeout = timeout
        cmd = (list(prefix) + self.hosts.on(self.hosts.dst) +
               [UFFDWP, "migrate", "--listen", f"{self.hosts.dst_ip}:{PORT}",
                "-D", str(self.dst_dir), "-L", self.plugdir, "--criu", criu or self.criu,
                "--json", "--timeout", str(timeout), *extra])
        self.dest_err = open(self.base / "dest.err", "w+")
        self.dest = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.dest_err, text=True)
        wait_for(lambda: "listening on" in (read_file(self.base / "dest.err") or "") or
                  self.dest.poll() is not None, "the destination listening")
        assert self.dest.poll() is None, read_file(self.base / "dest.err")

    def source_cmd(self, pid, extra=()):
        return (self.hosts.on(self.hosts.src) +
                [UFFDWP, "migrate", "-t", str(pid), "--to", f"{self.hosts.dst_ip}:{PORT}",
                 "-L", self.plugdir, "--criu", self.criu, "--json", "--timeout", "120",
                 "-W", str(self.base / "src"), *extra])

    def run_source(self, pid, extra=(), timeout=240):
        r = subprocess.run(self.source_cmd(pid, extra), capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        return r.returncode, records(r.stdout), r.stderr

    def finish_dest(self):
        out, _ = self.dest.communicate(timeout=self.dest_timeout)
        self.dest_err.seek(0)
        recs = records(out)
        summ = [r for r in recs if r.get("event") == "summary"]
        if summ and summ[-1]["dest_pid"]:
            self.restored = int(summ[-1]["dest_pid"])
        return self.dest.returncode, recs, self.dest_err.read()

    def close(self):
        if self.dest and self.dest.poll() is None:
            self.dest.kill()
            self.dest.wait(timeout=10)
        if self.restored:
            kill_tree(self.restored)


def records(out):
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def summary(recs):
    s = [r for r in recs if r.get("event") == "summary"]
    assert s, f"no summary in {recs}"
    return s[-1]


def bench_verify(wl_dir, pid):
    """Stop bench_wl's writer and have it check every page: (ok, answer)."""
    try:
        os.unlink(wl_dir / "verify")
    except FileNotFoundError:
        pass
    os.kill(pid, signal.SIGUSR2)
    ans = wait_for(lambda: read_file(wl_dir / "verify"), "verify").strip()
    return ans.startswith("ok"), ans


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read().split("\0")
    except OSError:
        return []


def children(pid):
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except OSError:
                pass
    return kids


REDIS_PORT = 6390


class Redis:
    """redis-server on the source host, in a pid namespace of its own."""

    def __init__(self, hosts, tmp_path):
        self.hosts = hosts
        self.proc = subprocess.Popen(
            hosts.on(hosts.src) + ["unshare", "-pf", "setsid", "redis-server", "--port",
                                   str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--enable-debug-command", "local",
                                   "--dir", str(tmp_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.cli(hosts.src, "ping", check=False) == "PONG", "redis up")
        self.root = next(p for p in [self.proc.pid] + descendants(self.proc.pid)
                         if cmdline(p)[:1] and "redis-server" in cmdline(p)[0])

    def cli(self, ns, *args, check=True):
        r = subprocess.run(self.hosts.on(ns) + ["redis-cli", "-p", str(REDIS_PORT), *args],
                           capture_output=True, text=True, timeout=60)
        if check:
            assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def state(self, ns):
        return self.cli(ns, "dbsize"), self.cli(ns, "debug", "digest")

    def close(self, restored=None):
        for pid in (restored, self.root):
            if pid:
                stop_holder(pid)
                kill_tree(pid)
        self.proc.kill()
        self.proc.wait(timeout=10)
