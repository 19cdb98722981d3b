# SPDX-License-Identifier: GPL-2.0
"""Every command's error paths leave things as they were.

Each case makes one command fail on purpose against a process whose state
is known: it has a base image, its holder has a held (uncommitted) scan and
it wrote pages since. After the failure, everything must be as before: the
protection of its memory as the kernel reports it, the holder and its
generation, the run directory, every file under the test's directory, and
the memory as the process sees it; and the next scan still returns the held
pages. docs/errors.md lists these cases next to the tests that cover the
heavier paths (CRIU, migrate, full disks, killed writers)."""
import os
import subprocess

import pytest

from helpers import UFFDWP, holder_file, no_process, pagemap_scan, snapshot, uffdwp
from test_criu import criu  # noqa: F401 (the migrate cases' fixture)

WPALLOWED, WRITTEN = 1 << 0, 1 << 1
RUN_DIR = "/run/uffdwp"

# (id, arguments, exit code, words the message holds). {pid} is the tracked
# process, {gone} a pid nobody has, {img} its base image, {tmp} the test's
# directory ({tmp}/afile is a file, {tmp}/empty an empty directory).
CASES = [
    ("track-start-again", "track start -t {pid}", 1, "already tracked"),
    ("track-start-gone", "track start -t {gone}", 1, "{gone}"),
    ("track-start-bad-timeout", "track start -t {pid} --idle-timeout x", 2, "idle-timeout"),
    ("track-scan-gone", "track scan -t {gone}", 1, "{gone}"),
    ("track-scan-foreign-option", "track scan -t {pid} --count 2", 2, "--count"),
    ("track-commit-unknown-gen", "track commit -t {pid} 99", 1, "99"),
    ("track-commit-bad-gen", "track commit -t {pid} x", 2, "x"),
    ("track-commit-no-gen", "track commit -t {pid}", 2, "GEN"),
    ("track-status-gone", "track status -t {gone}", 3, "{gone}"),
    ("track-stop-gone", "track stop -t {gone}", 3, "{gone}"),
    ("track-stop-extra", "track stop -t {pid} extra", 2, "extra"),
    ("track-rate-zero", "track rate -t {pid} --count 0", 2, "--count"),
    ("track-rate-tracked", "track rate -t {pid} --count 1 --interval 0.1", 1, "tracked"),
    ("snap-not-a-dir", "snap -t {pid} -D {tmp}/afile", 1, "afile"),
    ("snap-holds-an-image", "snap -t {pid} -D {img}", 1, "{img}"),
    ("snap-threads-0", "snap -t {pid} -D {tmp}/new --threads 0", 2, "0 threads"),
    ("snap-parent-empty", "snap -t {pid} -D {tmp}/new --parent {tmp}/empty", 1, "empty"),
    ("snap-parent-missing", "snap -t {pid} -D {tmp}/new --parent {tmp}/nothing", 1, "nothing"),
    ("snap-gone", "snap -t {gone} -D {tmp}/new", 1, "{gone}"),
    ("img-show-empty", "img show {tmp}/empty", 1, "empty"),
    ("img-show-extra", "img show {img} extra", 2, "extra"),
    ("img-verify-file", "img verify {tmp}/afile", 1, "afile"),
    ("img-stats-missing", "img stats {tmp}/nothing", 1, "nothing"),
    ("img-read-no-task", "img read {img} --task {gone}", 1, "{gone}"),
    ("img-read-bad-addr", "img read {img} --task {pid} zz 1", 2, "zz"),
    ("img-read-out-in-missing-dir", "img read {img} --task {pid} -o {tmp}/nothing/out", 1,
     "nothing"),
    ("img-merge-into-image", "img merge {img} --to {img}", 1, "{img}"),
    ("img-merge-bad-level", "img merge {img} --to {tmp}/new --level 99", 2, "level 99"),
    ("img-flatten-into-file", "img flatten {img} --to {tmp}/afile", 1, "afile"),
    ("img-flatten-of-nothing", "img flatten {tmp}/empty --to {tmp}/new", 1, "empty"),
    ("migrate-tracked", "migrate -t {pid} --to 127.0.0.1:1 --timeout 5", 2, "tracked already"),
    ("migrate-nobody-listens", "migrate -t {pid} --to 127.0.0.1:1 --timeout 5 --no-track", 1,
     "127.0.0.1:1"),
    ("migrate-bad-address", "migrate --listen 127.0.0.1:x -D {tmp}/new", 2, "127.0.0.1:x"),
    ("migrate-dir-not-empty", "migrate --listen 127.0.0.1:0 -D {img}", 2, "{img}"),
    ("migrate-both-sides", "migrate -t {pid} --to 127.0.0.1:1 --listen 127.0.0.1:1", 2,
     "--listen"),
]


def files_under(top):
    """{path: (size, mtime)} of the files under top, {path: None} of the
    directories (whose mtime a file made and removed again changes)."""
    out = {}
    for d, dirs, files in os.walk(top):
        out.update((os.path.join(d, n), None) for n in dirs)
        for n in files:
            st = os.lstat(os.path.join(d, n))
            out[os.path.join(d, n)] = (st.st_size, st.st_mtime_ns)
    return out


def run_dir(pid):
    """pid's holder files (other tests' holders may come and go)."""
    names = os.listdir(RUN_DIR) if os.path.isdir(RUN_DIR) else []
    return sorted(n for n in names if n.split(".")[0].endswith(f"-{pid}"))


@pytest.fixture
def known(qwl, tmp_path):
    """A tracked process with a base image, a held scan and pages written since."""
    w = qwl()
    addr, length = w.map(1, "anon", 256)
    w.cmd("write 1 0 256 1")
    uffdwp("snap", "-t", w.pid, "-D", tmp_path / "img")
    w.cmd("write 1 0 16 2")
    rc, held, _ = uffdwp("track", "scan", "-t", w.pid, "--hold")
    w.cmd("write 1 100 8 3")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "tmpdir").mkdir()
    w.region = (addr, addr + length)
    w.held_gen = held["gen"]
    return w


def state_of(w, tmp_path):
    rc, st, _ = uffdwp("track", "status", "-t", w.pid)
    return {
        "holder": (st["holder_pid"], st["last_scan"], st["tasks"]),
        "protection": pagemap_scan(w.pid, *w.region, WPALLOWED | WRITTEN),
        "run_dir": run_dir(w.pid),
        "files": files_under(tmp_path),
    }


@pytest.mark.parametrize("name,args,code,words", CASES, ids=[c[0] for c in CASES])
def test_failure_leaves_things_as_they_were(request, known, tmp_path, name, args, code, words):
    w = known
    env = dict(os.environ)
    if name.startswith("migrate-"):
        env["CRIU"] = request.getfixturevalue("criu")
    fill = {"pid": w.pid, "gone": no_process(), "img": tmp_path / "img", "tmp": tmp_path}
    argv = [a.format(**fill) for a in args.split()]
    memory = snapshot(w.pid)
    before = state_of(w, tmp_path)
    # migrate's work directory goes under $TMPDIR: here, where it is watched.
    env["TMPDIR"] = str(tmp_path / "tmpdir")
    p = subprocess.run([UFFDWP] + argv, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL, env=env)
    assert p.returncode == code, f"{argv}: exit {p.returncode}: {p.stderr}"
    assert words.format(**fill) in p.stderr + p.stdout, p.stderr
    after = state_of(w, tmp_path)
    for what in before:
        assert after[what] == before[what], f"{name} changed the {what}: {p.stderr}"
    now = snapshot(w.pid)
    changed = sorted(a for a in set(now) | set(memory) if now.get(a) != memory.get(a))
    assert not changed, f"{name} changed {len(changed)} pages, the first at {changed[0]:#x}"
    assert os.path.exists(holder_file(w.pid, "sock"))
    # The held scan is still held: its pages come again, with those written since.
    rc, rep, _ = uffdwp("track", "scan", "-t", w.pid)
    assert rep["gen"] == w.held_gen + 1, rep
    t = rep["tasks"][0]
    assert t["pending_bytes"] >= 16 * 4096 and t["written_bytes"] >= 8 * 4096, t
