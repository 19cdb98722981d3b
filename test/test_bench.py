# SPDX-License-Identifier: GPL-2.0
"""Smoke test of the tracker benchmark (`make bench`): a tiny run through
scripts/bench-track must finish, print its table with a verdict per target,
and write JSON with every figure. The figures themselves are not judged
here: the benchmark reports, it does not gate."""
import json
import os
import signal
import subprocess

import pytest

from helpers import BUILD

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_ABS = os.path.abspath(BUILD)
TOOL = os.path.join(BUILD_ABS, "bench-track-tool")

pytestmark = pytest.mark.timeout(240)

PCTS = ("0", "1", "10")
RESULT_KEYS = ("name", "size_bytes", "kind", "anon_huge_bytes", "probe_ms", "attach_ms",
               "attach_runs_ms", "stop_ms", "scan_ms", "scan_ms_per_gib", "scan_runs_ms",
               "written_pages", "reported_pages_min", "reported_pages_max", "pagemap_read_ms",
               "pagemap_over_scan_0pct", "scan_0pct_breakdown_ms", "write_ns_per_page",
               "write_pages", "tracker_mem_bytes", "tracked_bytes", "tracker_kib_per_gib",
               "holder")
TARGETS = {"scan_0pct_ms_per_gib", "pagemap_over_scan_0pct", "tracker_kib_per_gib",
           "holder_rss_mib"}


@pytest.fixture(scope="module")
def tool(tracking):
    """The benchmark program is not part of `make all`: build it here."""
    p = subprocess.run(["make", "-s", f"BUILD={BUILD_ABS}", TOOL], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        pytest.fail(f"building {TOOL} failed:\n{p.stdout}{p.stderr}")
    return TOOL


def run_bench(tmp_path, *args):
    """scripts/bench-track in its own session, killed whole if it overstays."""
    out = tmp_path / "bench-track.json"
    proc = subprocess.Popen([os.path.join(ROOT, "scripts", "bench-track"), "--out", str(out)]
                            + list(args), env=dict(os.environ, UFFDWP_BUILD=BUILD_ABS),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=200)
    finally:
        # The targets die with the tool (PR_SET_PDEATHSIG), holders with them.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return proc.returncode, stdout, stderr, out


def test_bench_quick(tool, tmp_path):
    rc, stdout, stderr, out = run_bench(tmp_path, "--sizes", "64M", "--quick")
    assert rc == 0, f"bench-track exited {rc}:\n{stderr}{stdout}"
    rep = json.loads(out.read_text())

    for k in ("kernel", "cpu", "cpus", "mem_total_bytes", "thp", "date"):
        assert k in rep["machine"], k
    assert rep["machine"]["kernel"] == os.uname().release
    kinds = [r["kind"] for r in rep["results"]]
    assert "4k" in kinds
    for r in rep["results"]:
        for k in RESULT_KEYS:
            assert k in r, f"{r.get('name')}: no {k}"
        assert r["size_bytes"] == 64 << 20
        assert r["attach_ms"] > 0 and r["pagemap_read_ms"] > 0
        for p in PCTS:
            assert r["scan_ms"][p] > 0, (r["name"], p)
            # A scan that found fewer pages than the target wrote lost writes.
            assert r["reported_pages_min"][p] >= r["written_pages"][p], (r["name"], p)
        assert r["written_pages"]["10"] == (64 << 20) // 4096 // 10
        for k in ("untracked", "first_after_protect", "after_scan_reprotect"):
            assert r["write_ns_per_page"][k] > 0, (r["name"], k)
        # Protected pages cost a fault; untracked ones do not.
        assert r["write_ns_per_page"]["first_after_protect"] > \
            r["write_ns_per_page"]["untracked"]
        assert r["tracker_mem_bytes"]["committed_max"] > 0
        assert r["holder"]["rss_bytes"] > 0
    names = {t["name"] for t in rep["targets"]}
    assert TARGETS <= names, TARGETS - names
    for t in rep["targets"]:
        assert isinstance(t["pass"], bool) and t["value"] >= 0, t

    assert "verdict" in stdout
    for row in ("attach", "scan + commit, 0 % written", "pagemap", "holder RSS"):
        assert row in stdout, row
    assert "PASS" in stdout or "MISS" in stdout


def test_bench_bad_option(tool, tmp_path):
    """Failing to run is the one thing that exits non-zero."""
    rc, _stdout, stderr, out = run_bench(tmp_path, "--sizes", "3M")
    assert rc != 0
    assert "bad size" in stderr
    assert not out.exists()
