# SPDX-License-Identifier: GPL-2.0
"""`uffdwp migrate` between two hosts on one machine.

Two network namespaces joined by a veth pair stand for the hosts; the
workload and the source side run in one, the destination in the other, and
everything between them goes over the veth (the control channel and CRIU's
page server). The migrated tree checks its own memory on the destination.
Every rollback case ends with the source checked: it runs, its memory is
intact, it is not tracked any more, and the destination kept nothing.
"""
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from helpers import UFFDWP, descendants
from mig_helpers import (REDIS_PORT, Hosts, Migration, Redis, Tree, bench_verify, children, cmdline,
                         records, summary)
from test_criu import _read, _uffd_wp_vmas, _wait_for, criu, plugdir  # noqa: F401

pytestmark = pytest.mark.timeout(300)

@pytest.fixture
def hosts(criu):
    for tool in ("ip", "nsenter", "unshare", "setsid"):
        if not shutil.which(tool):
            pytest.skip(f"no {tool} on PATH")
    try:
        h = Hosts()
    except RuntimeError as e:
        pytest.skip(f"cannot make two network namespaces: {e}")
    yield h
    h.close()


def limit(hosts, rate):
    try:
        hosts.limit(rate)
    except RuntimeError as e:
        pytest.skip(str(e))


@pytest.fixture
def mig(hosts, criu, plugdir, tmp_path):
    m = Migration(hosts, criu, plugdir, tmp_path)
    trees = []

    def tree(workload="bench_wl", args=()):
        t = Tree(hosts, tmp_path, workload, args)
        trees.append(t)
        return t
    m.tree = tree
    yield m
    m.close()
    for t in trees:
        t.close(m.restored)


def assert_source_as_before(m, t, dst_rc, dst_recs):
    """After a rollback: the destination kept nothing, the source runs, is
    untracked, and its memory is what it wrote."""
    assert dst_rc == 1, f"destination exit {dst_rc}"
    assert not m.dst_dir.exists() or not os.listdir(m.dst_dir), \
        f"left at the destination: {os.listdir(m.dst_dir)}"
    assert t.alive(), "the source tree is not running"
    assert _uffd_wp_vmas(t.root) == 0, "the source is still tracked"
    ok, ans = bench_verify(t.wl, t.root)
    assert ok, ans


# bench_wl: PAGES pages, RATE random page writes a second, continuously (-c).
BENCH = ("-c", 32768, 2000, 1)


@pytest.mark.parametrize("restore", ["eager", "lazy"])
def test_precopy(mig, restore):
    """Pre-copy converges on a tree writing 2000 pages/s; the destination's
    tree has every write, and each pre-dump after the first sent a part.
    lazy: the destination restores with criu lazy-pages from its images."""
    t = mig.tree("bench_wl", BENCH)
    mig.start_dest()
    extra = ["--lazy-restore"] if restore == "lazy" else []
    rc, recs, err = mig.run_source(t.root, ["--max-downtime", "5000"] + extra)
    drc, drecs, derr = mig.finish_dest()
    assert rc == 0, err + derr
    assert drc == 0, derr
    s = summary(recs)
    its = [r for r in recs if r["event"] == "iteration"]
    assert its[-1]["final"] and not any(r["final"] for r in its[:-1])
    assert len(its) >= 2
    assert s["iterations"] == len(its)
    full = its[0]["pages"]
    assert full >= 32768
    for r in its[1:]:
        assert r["pages"] < full / 2, f"run {r['iter']} sent {r['pages']} of {full} pages"
    cut = [r for r in recs if r["event"] == "cutover"][0]
    assert cut["reason"]
    # The prediction has the restore in it: 50 ms, and for an eager one
    # 5 us a page of the tree (uffdwp migrate's default estimate).
    restore_ms = 50 + (0 if restore == "lazy" else full * 0.005)
    assert cut["predicted_downtime_ms"] >= restore_ms, cut
    assert s["downtime_ms"] > 0 and s["dest_pid"] > 0
    # Bytes sent: about the memory plus what was written meanwhile.
    assert s["bytes_sent"] <= 1.2 * s["memory_bytes"] + s["pages_sent"] * 4096
    assert not t.alive(), "the source still runs after the cut-over"
    if restore == "lazy":
        assert "every page is here" in derr, derr
    ok, ans = bench_verify(t.wl, mig.restored)
    assert ok, ans
    assert not (mig.base / "src").exists(), "local images left after a success"


def test_precopy_criu_wl(mig):
    """criu_wl (anon, THP, sparse, shared and file memory, a child), stepped
    while the pre-dumps run: every page checks out on the destination."""
    t = mig.tree("criu_wl", (1024,))
    mig.start_dest()
    stop = threading.Event()

    def steps():
        while not stop.is_set():
            try:
                os.kill(t.root, signal.SIGUSR1)
            except ProcessLookupError:
                return
            time.sleep(0.3)
    th = threading.Thread(target=steps)
    th.start()
    try:
        rc, recs, err = mig.run_source(t.root, ["--max-iterations", "3"])
    finally:
        stop.set()
        th.join()
    drc, drecs, derr = mig.finish_dest()
    assert rc == 0 and drc == 0, err + derr
    step = int((_read(t.wl / "step") or "0").strip() or 0)
    assert step > 0, "no step ran during the migration"
    os.kill(mig.restored, signal.SIGUSR2)
    parent = _wait_for(lambda: _read(t.wl / "verify"), "verify").strip()
    child = (_read(t.wl / "verify.child") or "").strip()
    assert parent.startswith("ok") and child.startswith("ok"), (parent, child)
    assert int(parent.split()[1]) >= step


def test_stop_and_copy(mig):
    """--max-iterations 0 --no-track: one plain dump, the baseline."""
    t = mig.tree("bench_wl", BENCH)
    mig.start_dest()
    rc, recs, err = mig.run_source(t.root, ["--max-iterations", "0", "--no-track"])
    drc, _, derr = mig.finish_dest()
    assert rc == 0 and drc == 0, err + derr
    s = summary(recs)
    assert s["iterations"] == 1 and "stop-and-copy" in s["stop_reason"]
    ok, ans = bench_verify(t.wl, mig.restored)
    assert ok, ans


def test_writes_outpace_link(mig):
    """A tree writing faster than the link: pre-copy stops when the dirty
    set no longer shrinks, says so, and still migrates correctly."""
    limit(mig.hosts, "40mbit")  # 5 MB/s
    t = mig.tree("bench_wl", ("-c", 4096, 0, 1))  # writes flat out
    mig.start_dest()
    rc, recs, err = mig.run_source(t.root, ["--max-downtime", "1", "--max-iterations", "8"])
    drc, _, derr = mig.finish_dest()
    assert rc == 0 and drc == 0, err + derr
    cut = [r for r in recs if r["event"] == "cutover"][0]
    assert "no longer shrinks" in cut["reason"], cut
    assert cut["predumps"] < 8
    assert "no longer shrinks" in err
    ok, ans = bench_verify(t.wl, mig.restored)
    assert ok, ans


def _page_server_pid(dest):
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{d}/cmdline") as f:
                    cmd = f.read()
            except OSError:
                continue
            if ppid == dest.pid and "page-server" in cmd:
                return int(d)
    return None


def test_rollback_page_server_dies(mig):
    """The destination's page server killed during a pre-dump: rolled back."""
    t = mig.tree("bench_wl", BENCH)
    mig.start_dest()
    src = subprocess.Popen(mig.source_cmd(t.root, ["--max-downtime", "0"]),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           stdin=subprocess.DEVNULL)
    pid = _wait_for(lambda: _page_server_pid(mig.dest), "a page server", timeout=60)
    os.kill(pid, signal.SIGKILL)
    out, err = src.communicate(timeout=200)
    drc, drecs, derr = mig.finish_dest()
    assert src.returncode == 1, err
    rb = [r for r in records(out) if r["event"] == "rollback"]
    assert rb and rb[0]["error"], out
    assert_source_as_before(mig, t, drc, drecs)


def test_rollback_page_server_dies_leaving_a_child(mig, tmp_path):
    """A page server killed while a child of its own holds its page
    connection: what a CRIU killed during its kernel probes leaves (the
    ptrace probe child sleeps forever with CRIU's fds). The destination
    kills what the page server left in its process group, so the source's
    pre-dump sees the connection close and rolls back at once, instead of
    writing into a connection nobody reads until its timeout."""
    wrapper = tmp_path / "criu-with-a-child"
    wrapper.write_text(f'#!/bin/sh\n(exec sleep 1234 &)\nexec "{mig.criu}" "$@"\n')
    wrapper.chmod(0o755)
    t = mig.tree("bench_wl", BENCH)
    mig.start_dest(criu=str(wrapper))
    src = subprocess.Popen(mig.source_cmd(t.root, ["--max-downtime", "0"]),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           stdin=subprocess.DEVNULL)
    pid = _wait_for(lambda: _page_server_pid(mig.dest), "a page server", timeout=60)
    os.kill(pid, signal.SIGKILL)
    try:
        out, err = src.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        src.kill()
        src.communicate()
        raise AssertionError("the source did not see the page server die within 60 s")
    drc, drecs, derr = mig.finish_dest()
    assert src.returncode == 1, err
    left = [p for p in os.listdir("/proc") if p.isdigit() and
            (cmdline(int(p)) or [""])[:2] == ["sleep", "1234"]]
    assert not left, f"the page server's child lives on: {left}"
    assert_source_as_before(mig, t, drc, drecs)


@pytest.fixture
def small_fs(tmp_path):
    """A 24 MiB tmpfs, unmounted after the test."""
    d = tmp_path / "small"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs: {r.stderr.strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_rollback_destination_disk_full(mig, small_fs):
    """The destination's disk fills during the first pre-dump: rolled back,
    the error names the full disk."""
    t = mig.tree("bench_wl", ("-c", 16384, 2000, 1))  # 64 MiB > 24 MiB
    mig.start_dest(dst_dir=small_fs / "dst")
    rc, recs, err = mig.run_source(t.root)
    drc, drecs, derr = mig.finish_dest()
    assert rc == 1, err
    assert re.search(r"No space left|ENOSPC|page server", err + derr), err + derr
    assert_source_as_before(mig, t, drc, drecs)


def test_rollback_source_disk_full(mig, small_fs):
    """The source's local image directory is full: rolled back."""
    t = mig.tree("bench_wl", BENCH)
    fill = small_fs / "fill"
    subprocess.run(["dd", "if=/dev/zero", f"of={fill}", "bs=1M", "count=24"],
                   capture_output=True)
    mig.start_dest()
    r = subprocess.run(mig.source_cmd(t.root, ["-W", str(small_fs / "src")]),
                       capture_output=True, text=True, timeout=200, stdin=subprocess.DEVNULL)
    drc, drecs, derr = mig.finish_dest()
    assert r.returncode in (1, 2), r.stderr
    assert_source_as_before(mig, t, drc, drecs)


def _hiding(path):
    """A prefix that runs a command in a mount namespace of its own where
    @path is an empty tmpfs: a restore that needs what is there fails."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f'mount -t tmpfs none "{path}" && exec "$@"', "sh"]


def test_rollback_restore_fails(mig, tmp_path):
    """The restore fails on the destination (the file the tree maps is not
    there: the destination sees an empty directory in its place)."""
    t = mig.tree("criu_wl", (256,))
    # The destination runs in a mount namespace of its own where the
    # workload's directory (with the mapped wl.data) is an empty tmpfs.
    mig.start_dest(prefix=_hiding(t.wl))
    rc, recs, err = mig.run_source(t.root, ["--max-iterations", "2"])
    drc, drecs, derr = mig.finish_dest()
    assert rc == 1, err
    assert "restore failed" in err, err
    assert drc == 1
    assert not mig.dst_dir.exists() or not os.listdir(mig.dst_dir)
    assert t.alive() and _uffd_wp_vmas(t.root) == 0
    os.kill(t.root, signal.SIGUSR1)
    _wait_for(lambda: (_read(t.wl / "step") or "").strip() != "", "a step after the rollback")
    os.kill(t.root, signal.SIGUSR2)
    parent = _wait_for(lambda: _read(t.wl / "verify"), "verify").strip()
    assert parent.startswith("ok"), parent


@pytest.mark.parametrize("when", ["predump-1", "between", "final-dump"])
def test_rollback_interrupted(mig, when):
    """Ctrl-C (SIGINT) to the source at a step: the run in progress ends,
    then everything is undone."""
    t = mig.tree("bench_wl", BENCH)
    mig.start_dest()
    src = subprocess.Popen(mig.source_cmd(t.root, ["--max-downtime", "0",
                                                   "--max-iterations", "4"]),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           stdin=subprocess.DEVNULL)
    if when == "predump-1":
        _wait_for(lambda: any(cmdline(p)[1:2] == ["pre-dump"] for p in children(src.pid)),
                  "criu pre-dump running")
    elif when == "final-dump":
        _wait_for(lambda: any(cmdline(p)[1:2] == ["dump"] for p in children(src.pid)),
                  "criu dump running", timeout=120)
    else:
        _wait_for(lambda: (mig.base / "src" / "2").exists(), "pre-dump 2 started")
    os.kill(src.pid, signal.SIGINT)
    out, err = src.communicate(timeout=200)
    drc, drecs, derr = mig.finish_dest()
    assert src.returncode == 1, err
    assert "interrupted" in err, err
    assert_source_as_before(mig, t, drc, drecs)


def test_usage_errors(tmp_path):
    """Bad arguments are refused before anything starts, naming the problem."""
    for args, want in ((["-t", "1"], "either --to"),
                       (["--to", "127.0.0.1:1"], "-t PID"),
                       (["--listen", "127.0.0.1:1"], "-D DIR"),
                       (["-t", "x", "--to", "127.0.0.1:1"], "not a process id")):
        r = subprocess.run([UFFDWP, "migrate", *args], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        assert r.returncode == 2 and want in r.stderr, (args, r.stderr)
    d = tmp_path / "used"
    d.mkdir()
    (d / "x").write_text("x")
    r = subprocess.run([UFFDWP, "migrate", "--listen", "127.0.0.1:2799", "-D", str(d),
                        "--criu", "/bin/true"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "not empty" in r.stderr, r.stderr
    # A successful migration removes its -W: one that holds something is refused.
    r = subprocess.run([UFFDWP, "migrate", "-t", str(os.getpid()), "--to", "127.0.0.1:1",
                        "-W", str(d), "--criu", "/bin/true"], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "not empty" in r.stderr, r.stderr
    assert (d / "x").read_text() == "x"


@pytest.fixture
def lazy_pipes():
    """CRIU's remote lazy pages need 4 MiB pipes: root lacks CAP_SYS_RESOURCE
    here, so fs.pipe-max-size is raised for the test and put back after."""
    import zdtm_run
    with zdtm_run.sysctls({"fs.pipe-max-size": 4194304}):
        yield


def test_postcopy(mig, lazy_pipes):
    """--postcopy: pre-copy, then the final dump leaves the written pages on
    the source, served on fault and in the background; every page checks out."""
    t = mig.tree("bench_wl", BENCH)
    mig.start_dest()
    rc, recs, err = mig.run_source(t.root, ["--postcopy", "--max-iterations", "2"])
    drc, drecs, derr = mig.finish_dest()
    assert rc == 0 and drc == 0, err + derr
    s = summary(recs)
    assert s["downtime_ms"] > 0
    assert "every page is here" in derr
    ok, ans = bench_verify(t.wl, mig.restored)
    assert ok, ans


def test_postcopy_refused_without_big_pipes(mig):
    """Without fs.pipe-max-size of 4 MiB, post-copy is refused at once, saying why."""
    import zdtm_run
    t = mig.tree("bench_wl", BENCH)
    with zdtm_run.sysctls({"fs.pipe-max-size": 1048576}):
        rc, recs, err = mig.run_source(t.root, ["--postcopy"])
    assert rc == 2 and "fs.pipe-max-size" in err, err
    assert t.alive() and _uffd_wp_vmas(t.root) == 0


def test_postcopy_source_dies_after_cutover(mig, lazy_pipes):
    """The source's dump killed while it still serves pages, after the tree
    runs on the destination: both sides say post-copy failed (exit 3) and
    what is lost."""
    limit(mig.hosts, "80mbit")  # 64 MiB take about 7 s
    t = mig.tree("bench_wl", ("-c", 16384, 100, 1))
    mig.start_dest()
    src = subprocess.Popen(mig.source_cmd(t.root, ["--postcopy", "--max-iterations", "0",
                                                   "--no-track"]),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           stdin=subprocess.DEVNULL)
    _wait_for(lambda: "every page is here" in (_read(mig.base / "dest.err") or "") or
              "runs here" in (_read(mig.base / "dest.err") or "") or
              any(cmdline(p)[1:2] == ["dump"] for p in children(src.pid)) and
              (mig.base / "dst" / "1" / "restored.pid").exists(), "the cut-over", timeout=120)
    time.sleep(0.5)
    dumps = [p for p in children(src.pid) if cmdline(p)[1:2] == ["dump"]]
    assert dumps, "the post-copy dump ended before it could be killed"
    os.kill(dumps[0], signal.SIGKILL)
    out, err = src.communicate(timeout=200)
    drc, drecs, derr = mig.finish_dest()
    assert src.returncode == 3, err
    assert "post-copy failed after the cut-over" in err, err
    assert drc == 3 and "post-copy failed after the cut-over" in derr, derr
    mig.restored = None
    # As the message says: the source goes on, from the moment of the cut-over.
    assert t.alive(), "the source tree does not run"
    ok, ans = bench_verify(t.wl, t.root)
    assert ok, ans


def redis_clients(hosts):
    """The TCP sockets of redis's port on the source, but the listening one."""
    r = subprocess.run(hosts.on(hosts.src) + ["ss", "-Htan", f"sport = :{REDIS_PORT}"],
                       capture_output=True, text=True, timeout=30, check=True)
    return [l for l in r.stdout.splitlines() if not l.startswith("LISTEN")]


@pytest.mark.parametrize("mode", ["precopy", "postcopy"])
def test_migrate_redis(mig, tmp_path, mode, request):
    """redis filled and written by a client during the pre-dumps: DBSIZE and
    DEBUG DIGEST on the destination equal what the source had."""
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        pytest.skip("no redis-server/redis-cli (Debian redis-server, redis-tools)")
    extra = ["--max-iterations", "4", "--max-downtime", "0"]
    if mode == "postcopy":
        request.getfixturevalue("lazy_pipes")
        extra.append("--postcopy")
    r = Redis(mig.hosts, tmp_path)
    try:
        assert r.cli(mig.hosts.src, "debug", "populate", "100000", "key", "200") == "OK"
        mig.start_dest()
        src = subprocess.Popen(mig.source_cmd(r.root, extra), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        # One client writes while the first pre-dumps run, then goes: an
        # established connection would need --tcp-established, so the
        # source is held between two runs until redis has closed every
        # client socket (ours that read the state included).
        writer = subprocess.Popen(
            mig.hosts.on(mig.hosts.src) + ["redis-benchmark", "-p", str(REDIS_PORT), "-q",
                                           "-n", "100000000", "-c", "1", "-r", "200000",
                                           "-t", "set"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(lambda: (mig.base / "src" / "3").exists() or src.poll() is not None,
                  "pre-dump 3", timeout=120)
        os.kill(src.pid, signal.SIGSTOP)
        try:
            writer.kill()
            writer.wait()
            _wait_for(lambda: not [c for c in children(src.pid) if "criu" in cmdline(c)[0]],
                      "the CRIU run in progress to end", timeout=120)
            before = r.state(mig.hosts.src)
            _wait_for(lambda: not redis_clients(mig.hosts), "redis to close its clients")
        finally:
            os.kill(src.pid, signal.SIGCONT)
        out, err = src.communicate(timeout=240)
        drc, _, derr = mig.finish_dest()
        assert src.returncode == 0 and drc == 0, err + derr
        assert int(before[0]) > 100000, before
        assert r.state(mig.hosts.dst) == before
    finally:
        r.close(mig.restored)


def test_postcopy_final_dump_fails(mig, tmp_path, lazy_pipes):
    """A lazy final dump that fails before it is ready (an established TCP
    connection without --tcp-established) is the dump's failure: rolled
    back with CRIU's reason, the destination never asked to restore."""
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        pytest.skip("no redis-server/redis-cli (Debian redis-server, redis-tools)")
    r = Redis(mig.hosts, tmp_path)
    client = None
    try:
        client = subprocess.Popen(mig.hosts.on(mig.hosts.src) +
                                  ["redis-cli", "-p", str(REDIS_PORT)],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        _wait_for(lambda: redis_clients(mig.hosts), "the client connected")
        mig.start_dest()
        rc, recs, err = mig.run_source(r.root, ["--postcopy", "--max-iterations", "1"])
        drc, _, derr = mig.finish_dest()
        assert rc == 1, err
        assert "criu dump" in err and "TCP" in err, err
        assert "restore" not in derr, derr
        assert r.cli(mig.hosts.src, "ping") == "PONG"
    finally:
        if client:
            client.kill()
            client.wait()
        r.close(mig.restored)


def test_rollback_destination_dies(mig):
    """The destination killed during a pre-dump: the source sees the control
    connection go and rolls back on its own."""
    t = mig.tree("bench_wl", BENCH)
    mig.start_dest()
    src = subprocess.Popen(mig.source_cmd(t.root, ["--max-downtime", "0"]),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           stdin=subprocess.DEVNULL)
    _wait_for(lambda: (mig.base / "src" / "2").exists(), "pre-dump 2 started", timeout=120)
    ps = _page_server_pid(mig.dest)
    mig.dest.kill()
    mig.dest.wait()
    if ps:
        try:
            os.kill(ps, signal.SIGKILL)
        except ProcessLookupError:
            pass
    out, err = src.communicate(timeout=200)
    assert src.returncode == 1, err
    assert "rolled back" in err, err
    assert t.alive() and _uffd_wp_vmas(t.root) == 0
    ok, ans = bench_verify(t.wl, t.root)
    assert ok, ans


def test_interrupt_during_restore_is_not_a_rollback(mig):
    """SIGINT once the destination restores: the source waits for its
    answer, and the migration completes (two running copies must never be)."""
    t = mig.tree("bench_wl", BENCH)
    mig.start_dest()
    src = subprocess.Popen(mig.source_cmd(t.root, ["--max-iterations", "1"]),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           stdin=subprocess.DEVNULL)
    _wait_for(lambda: any(cmdline(p)[1:2] == ["restore"] for p in children(mig.dest.pid)),
              "criu restore on the destination", timeout=120)
    os.kill(src.pid, signal.SIGINT)
    out, err = src.communicate(timeout=200)
    drc, _, derr = mig.finish_dest()
    assert src.returncode == 0 and drc == 0, err + derr
    assert not t.alive()
    ok, ans = bench_verify(t.wl, mig.restored)
    assert ok, ans


def test_output_reader_gone_is_no_reason_to_die(mig):
    """stdout and stderr are a pipe nobody reads any more (Ctrl-C on
    "uffdwp migrate ... | tee"): the failure is still rolled back to the
    end (exit 1), not cut short by SIGPIPE."""
    t = mig.tree("bench_wl", BENCH)
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run(mig.source_cmd(t.root), stdout=w, stderr=w, timeout=120,
                           stdin=subprocess.DEVNULL)
    finally:
        os.close(w)
    assert p.returncode == 1, f"exit {p.returncode} (nobody listens at the destination)"
    assert t.alive() and _uffd_wp_vmas(t.root) == 0


def _after_cutover(mig, src_err):
    """Wait until the source says the tree runs on the destination, while
    post-copy still goes on; the destination's criu lazy-pages."""
    _wait_for(lambda: "the tree runs on the destination" in (_read(src_err) or ""),
              "the cut-over", timeout=120)
    lazy = [p for p in children(mig.dest.pid) if cmdline(p)[1:2] == ["lazy-pages"]]
    assert lazy, "post-copy was over before the test could act on it"
    return lazy[0]


def _postcopy_acting_at_cutover(mig, tmp_path, act):
    """A 64 MiB post-copy over a slow link, with act(src_err) called once
    the cut-over is under way; returns the tree, the source and its stderr."""
    limit(mig.hosts, "80mbit")  # 64 MiB take about 7 s
    t = mig.tree("bench_wl", ("-c", 16384, 100, 1))
    mig.start_dest()
    src_err = tmp_path / "src.err"
    with open(src_err, "w") as e:
        src = subprocess.Popen(mig.source_cmd(t.root, ["--postcopy", "--max-iterations", "1"]),
                               stdout=subprocess.PIPE, stderr=e, text=True,
                               stdin=subprocess.DEVNULL)
        act(src_err)
        src.communicate(timeout=200)
    return t, src, _read(src_err)


def test_postcopy_destination_lazy_pages_dies(mig, lazy_pipes, tmp_path):
    """The destination's criu lazy-pages dies during post-copy: its tree
    lacks pages and is killed. The source's dump sees only a closed page
    connection and ends well, but the source is not killed on that word:
    the destination says its pages did not all come (PAGES rc=), so the
    source tree runs again, untracked, from the cut-over, memory intact."""
    t, src, err = _postcopy_acting_at_cutover(
        mig, tmp_path, lambda src_err: os.kill(_after_cutover(mig, src_err), signal.SIGKILL))
    drc, drecs, derr = mig.finish_dest()
    mig.restored = None
    assert drc == 3 and "post-copy failed after the cut-over" in derr, derr
    assert src.returncode == 3, err
    # The source's dump ends well (the connection closed) or fails (reset).
    assert "post-copy failed after the cut-over" in err, err
    assert "source tree killed" not in err and "No parent image" not in err, err
    assert t.alive(), "the source tree does not run"
    assert _uffd_wp_vmas(t.root) == 0, "the source is still tracked"
    ok, ans = bench_verify(t.wl, t.root)
    assert ok, ans


def test_postcopy_interrupt_at_destination_is_not_a_rollback(mig, lazy_pipes, tmp_path):
    """SIGINT to the destination during post-copy: the tree runs there, so
    nothing is undone (lazy-pages killed under it would zero the pages it
    has not got): post-copy ends, every page checks out, both exit 0."""
    def interrupt(src_err):
        _after_cutover(mig, src_err)
        os.kill(mig.dest.pid, signal.SIGINT)
    t, src, err = _postcopy_acting_at_cutover(mig, tmp_path, interrupt)
    drc, drecs, derr = mig.finish_dest()
    assert src.returncode == 0 and drc == 0, err + derr
    assert "every page is here" in derr and "source tree killed" in err
    ok, ans = bench_verify(t.wl, mig.restored)
    assert ok, ans


def test_postcopy_rollback_resumes_the_source(mig, lazy_pipes):
    """A post-copy cut-over that fails before GO (the restore fails): the
    lazy dump, which the closed page connection ends, leaves the tasks
    stopped; the rollback lets them run again."""
    t = mig.tree("criu_wl", (256,))
    mig.start_dest(prefix=_hiding(t.wl))
    rc, recs, err = mig.run_source(t.root, ["--postcopy", "--max-iterations", "1"])
    drc, drecs, derr = mig.finish_dest()
    assert rc == 1 and "restore failed" in err, err
    assert drc == 1
    assert t.alive(), "the source tree is stopped after the rollback"
    assert _uffd_wp_vmas(t.root) == 0


# A tree with one TCP connection to redis: SIGUSR1 sends PING on it and
# writes the answer (or why there is none) to ./reply.
PING_TREE = f"""
import os, signal, socket
s = socket.create_connection(("127.0.0.1", {REDIS_PORT}))
s.settimeout(10)
def ping(*_):
    try:
        s.sendall(b"PING\\r\\n")
        ans = s.recv(64).decode().strip()
    except OSError as e:
        ans = repr(e)
    with open("reply.tmp", "w") as f:
        f.write(ans)
    os.rename("reply.tmp", "reply")
signal.signal(signal.SIGUSR1, ping)
open("ready", "w").close()
while True:
    signal.pause()
"""


def test_rollback_keeps_tcp_connections(mig, tmp_path):
    """--tcp-established and a restore that fails: the final dump locked
    the tree's connection and put it in repair mode, which only CRIU can
    undo. Rolled back, the same connection carries data again."""
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        pytest.skip("no redis-server/redis-cli (Debian redis-server, redis-tools)")
    (tmp_path / "redis").mkdir()
    r = Redis(mig.hosts, tmp_path / "redis")
    home = tmp_path / "tree"
    (home / "sub").mkdir(parents=True)
    tree = subprocess.Popen(
        mig.hosts.on(mig.hosts.src) + ["unshare", "-pf", "setsid", "/usr/bin/python3", "-c",
                                       PING_TREE],
        cwd=home / "sub", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    root = None
    try:
        _wait_for(lambda: (home / "sub" / "ready").exists(), "the tree connected")
        root = next(p for p in descendants(tree.pid) if "python3" in (cmdline(p) or [""])[0])
        # The destination sees an empty directory where the tree's cwd was.
        mig.start_dest(prefix=_hiding(home))
        rc, recs, err = mig.run_source(root, ["--tcp-established", "--max-iterations", "1"])
        drc, _, derr = mig.finish_dest()
        assert rc == 1 and "restore failed" in err, err + derr
        assert "undid its locks" in err, err
        assert drc == 1
        os.kill(root, signal.SIGUSR1)
        ans = _wait_for(lambda: _read(home / "sub" / "reply"), "the answer to PING", timeout=30)
        assert ans.strip() == "+PONG", ans
    finally:
        if root:
            os.kill(root, signal.SIGKILL)
        tree.kill()
        tree.wait(timeout=10)
        r.close()
