# SPDX-License-Identifier: GPL-2.0
"""A real program migrated: redis-server (Debian) through two tracked
pre-dumps and a dump while a client writes, then restored; DBSIZE and
DEBUG DIGEST must be the same before the dump and after the restore.

redis runs in a PID namespace of its own (`unshare -pf setsid`), with
`--save ''` and nothing on disk, filled by redis-benchmark. A client
thread keeps writing during the pre-dumps and stops before the dump;
with --tcp-established it stays connected through dump and restore and
asks for the digest on the same connection afterwards.

scripts/bench-redis runs the same with a bigger fill and prints each
layer's size and frozen time.
"""
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from helpers import kill_tree, stop_holder, wait_for
from rt_helpers import dump_stats
from test_criu import criu, plugdir  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(300)

TUNABLES = {"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}


def _resp(*args):
    """A command in RESP, redis' wire format."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    """A minimal redis client on one TCP connection."""

    def __init__(self, port):
        self.sk = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            c = self.sk.recv(65536)
            if not c:
                raise ConnectionError("redis closed the connection")
            self.buf += c
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        if line[:1] == b"$":
            n = int(line[1:])
            while len(self.buf) < n + 2:
                self.buf += self.sk.recv(65536)
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v.decode()
        if line[:1] == b"-":
            raise AssertionError(f"redis: {line.decode()}")
        return line[1:].decode()

    def call(self, *args):
        self.sk.sendall(_resp(*args))
        return self.reply()

    def close(self):
        self.sk.close()


class Writer(threading.Thread):
    """Writes values of @size bytes to random keys of @keys, @rate a second,
    on its own connection, until stopped; pause() keeps the connection."""

    def __init__(self, port, keys, size, rate=2000):
        super().__init__(daemon=True)
        self.conn = Conn(port)
        self.keys, self.size, self.rate = keys, size, rate
        self.go = threading.Event()
        self.go.set()
        self.idle = threading.Event()
        self.done = False
        self.writes = 0
        self.error = None

    def run(self):
        import random
        rng = random.Random(1)
        batch = max(1, self.rate // 100)
        try:
            while not self.done:
                if not self.go.is_set():
                    self.idle.set()
                    self.go.wait(0.1)
                    continue
                self.idle.clear()
                n = 0
                for _ in range(batch):
                    k = rng.randrange(self.keys)
                    v = os.urandom(self.size // 2).hex()
                    self.conn.sk.sendall(_resp("SET", f"key:{k:012d}", v))
                    n += 1
                for _ in range(n):
                    assert self.conn.reply() == "OK"
                self.writes += n
                time.sleep(0.01)
        except Exception as e:  # noqa: BLE001 (reported by stop())
            self.error = e
        self.idle.set()

    def pause(self):
        self.go.clear()
        self.idle.wait(30)
        assert self.error is None, self.error

    def stop(self):
        self.done = True
        self.go.set()
        self.join(30)
        assert self.error is None, self.error
        self.conn.close()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class Redis:
    """redis-server in its own PID namespace, and its dumps."""

    def __init__(self, criu, plugdir, base):
        self.criu, self.plugdir, self.base = criu, plugdir, base
        self.port = _free_port()
        data = base / "redis"
        data.mkdir()
        self.unshare = subprocess.Popen(
            ["unshare", "-pf", "setsid", "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(data),
             "--daemonize", "no", "--enable-debug-command", "yes", "--logfile", ""],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=dict(os.environ, **TUNABLES))
        self.pid = wait_for(lambda: (_children(self.unshare.pid) or [0])[0], "redis-server")
        self.restored = None
        self.lazy = None
        # CRIU's log level for dumps: -v4 logs every page range, which
        # costs frozen time (scripts/bench-redis takes -v2).
        self.verbosity = "-v4"
        wait_for(self._ping, "redis to answer")

    def _ping(self):
        try:
            c = Conn(self.port)
        except OSError:
            return False
        try:
            return c.call("PING") == "PONG"
        finally:
            c.close()

    def cli(self, *args):
        c = Conn(self.port)
        try:
            return c.call(*args)
        finally:
            c.close()

    def state(self, conn=None):
        """(DBSIZE, DEBUG DIGEST), on @conn or a connection of its own."""
        if conn:
            return int(conn.call("DBSIZE")), conn.call("DEBUG", "DIGEST")
        return int(self.cli("DBSIZE")), self.cli("DEBUG", "DIGEST")

    def fill(self, keys, size):
        r = subprocess.run(["redis-benchmark", "-p", str(self.port), "-t", "set", "-n",
                            str(keys * 3), "-r", str(keys), "-d", str(size), "-P", "32", "-q",
                            "-c", "4"], capture_output=True, text=True, timeout=600,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr

    def criu_run(self, action, name, parent=None, extra=()):
        d = self.base / name
        d.mkdir()
        cmd = [self.criu, action, "-t", str(self.pid), "-D", str(d), "-L", self.plugdir,
               self.verbosity, "-o", f"{action}.log", "--uffd-wp-track", *extra]
        if parent:
            cmd += ["--prev-images-dir", f"../{parent}"]
        t = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                           stdin=subprocess.DEVNULL)
        took = time.time() - t
        log = d / f"{action}.log"
        assert r.returncode == 0, f"{' '.join(cmd)}: exit {r.returncode}\n" + \
            "\n".join((log.read_text() if log.exists() else "").splitlines()[-25:])
        size = sum(os.path.getsize(d / f) for f in os.listdir(d)
                   if f.startswith("pages-") or f.startswith("uffdwp-pages-"))
        return d, {"size": size, "wall": took, **dump_stats(str(d))}

    def restore(self, d, lazy=False, extra=()):
        pidfile = self.base / "restored.pid"
        cmd = [self.criu, "restore", "-D", str(d), "-d", "--pidfile", str(pidfile), "-v4",
               "-o", "restore.log", "-L", self.plugdir, *extra]
        if lazy:
            lp = [self.criu, "lazy-pages", "-D", str(d), "-d", "-v4", "-o", "lazy-pages.log",
                  "-L", self.plugdir, "--pidfile", str(self.base / "lazy.pid")]
            r = subprocess.run(lp, capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL)
            assert r.returncode == 0, r.stderr
            self.lazy = int((self.base / "lazy.pid").read_text())
            cmd.append("--lazy-pages")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                           stdin=subprocess.DEVNULL)
        log = d / "restore.log"
        assert r.returncode == 0, "restore failed\n" + \
            "\n".join((log.read_text() if log.exists() else "").splitlines()[-25:])
        self.restored = int(pidfile.read_text())

    def close(self):
        for pid in (self.pid, self.restored):
            if pid:
                stop_holder(pid)
                kill_tree(pid)
        if self.lazy:
            try:
                os.kill(self.lazy, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.unshare.kill()
        self.unshare.wait(10)


def migrate(rd, keys, size, mode, gap=1.0):
    """Two pre-dumps with the client writing, a dump, a restore: returns the
    per-layer figures and the (DBSIZE, DIGEST) before and after."""
    extra = ("--plugin-pages",) if mode == "plugin-pages" else ()
    tcp = mode == "tcp-established"
    w = Writer(rd.port, keys, size)
    w.start()
    layers, parent = [], None
    for i in range(2):
        time.sleep(gap)
        d, st = rd.criu_run("pre-dump", f"pre{i}", parent, extra)
        layers.append(("pre-dump %d" % (i + 1), st))
        parent = d.name
    time.sleep(gap)
    if tcp:
        w.pause()
        before = rd.state(w.conn)
    else:
        w.stop()
        # redis must have seen the client go: an established socket cannot be dumped.
        wait_for(lambda: rd.cli("CLIENT", "LIST").count("\n") <= 1, "the writer to disconnect")
        before = rd.state()
    d, st = rd.criu_run("dump", "dump", parent,
                        extra + (("--tcp-established",) if tcp else ()))
    layers.append(("dump", st))
    rd.restore(d, lazy=mode == "lazy-pages", extra=("--tcp-established",) if tcp else ())
    if tcp:
        # The same connection, kept through dump and restore.
        after = rd.state(w.conn)
        w.go.set()
        time.sleep(0.3)
        w.stop()
    else:
        after = rd.state()
    return layers, before, after, w.writes


@pytest.fixture(scope="module")
def redis_bins():
    for tool, pkg in (("redis-server", "redis-server"), ("redis-benchmark", "redis-tools")):
        if not shutil.which(tool):
            pytest.skip(f"no {tool} on PATH (Debian package {pkg})")


@pytest.fixture
def redis(criu, plugdir, tmp_path, redis_bins):  # noqa: F811 (fixtures)
    made = []

    def make():
        r = Redis(criu, plugdir, tmp_path)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()

KEYS, SIZE = 40000, 1024  # about 60 MiB of data in the suite


@pytest.mark.parametrize("mode", ["raw", "plugin-pages", "lazy-pages", "tcp-established"])
def test_redis_migrate(redis, mode):
    rd = redis()
    rd.fill(KEYS, SIZE)
    n = rd.state()[0]
    assert n > KEYS * 9 // 10, n
    layers, before, after, writes = migrate(rd, KEYS, SIZE, mode)
    assert writes > 0
    assert before == after, (before, after)
    full = layers[0][1]["pages_written"]
    for name, st in layers:
        print(f"{mode} {name}: {st['pages_written']} pages, {st['size'] / 2**20:.1f} MiB, "
              f"frozen {st['frozen_time'] / 1000:.1f} ms")
    # The layers after the first hold what the writer changed, far from all.
    assert all(st["pages_written"] < full // 2 for _, st in layers[1:]), layers
