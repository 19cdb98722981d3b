# SPDX-License-Identifier: GPL-2.0
"""The uffdwp command's surface: options anywhere, JSON for results and
errors, exit codes, help for every command and a manual from the same
tables, messages that say what is wrong."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from helpers import BUILD, UFFDWP, holder_file, no_process

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
COMMANDS = {
    "track": ["start", "scan", "commit", "status", "stop", "rate"],
    "snap": [None],
    "img": ["show", "verify", "stats", "read", "merge", "flatten"],
}


def run(*args, **kw):
    return subprocess.run([UFFDWP] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, **kw)


def one_json(p):
    """stdout must be exactly one JSON document."""
    return json.loads(p.stdout)


# ------------------------------------------------------------------ help, man

@pytest.mark.parametrize("cmd,sub", [(c, s) for c, subs in COMMANDS.items() for s in subs])
def test_help_for_every_command(built, cmd, sub):
    words = [cmd] + ([sub] if sub else [])
    for args in (words + ["--help"], ["--help"] + words, words + ["-h"], ["-v"] + words + ["--help"]):
        p = run(*args)
        assert p.returncode == 0, (args, p.stderr)
        assert p.stdout.startswith("usage: uffdwp " + " ".join(words)), (args, p.stdout)
        assert "exit status:" in p.stdout and not p.stderr
    # Every option the help lists is one the command takes (and --help wins).
    p = run(*words, "--help")
    for opt in re.findall(r"^  (?:-\w, )?(--[\w-]+)", p.stdout, re.M):
        q = run(*words, opt, "1" if opt in ("--pid", "--idle-timeout") else "x", "--help")
        assert "unrecognized option" not in q.stderr, (opt, q.stderr)


def test_top_level_help_and_usage(built):
    p = run("--help")
    assert p.returncode == 0 and p.stdout.startswith("usage: uffdwp")
    for c in COMMANDS:
        assert f"\n  {c} " in p.stdout
    p = run()
    assert p.returncode == 2 and p.stderr.startswith("uffdwp: no command given")
    p = run("--bogus")
    assert p.returncode == 2 and "unknown option '--bogus'" in p.stderr


def test_exit_codes_documented(built):
    for args in (["--help"], ["track", "--help"], ["snap", "--help"], ["img", "--help"]):
        text = " ".join(run(*args).stdout.split())
        for code in ("0 ok", "1 failed", "2 bad arguments", "3 (track)"):
            assert code in text, (args, code)


def test_man_page_from_the_same_tables(built, tmp_path):
    p = run("--help-man")
    assert p.returncode == 0 and p.stdout.startswith(".\\\"")
    man = p.stdout
    for cmd, subs in COMMANDS.items():
        for sub in subs:
            assert f'.SS "uffdwp {cmd} {sub}"' in man if sub else f'.SH "uffdwp {cmd}"' in man
        for opt in re.findall(r"^  (?:-\w, )?--([\w-]+)", run(cmd, "--help").stdout, re.M):
            assert "\\-\\-" + opt.replace("-", "\\-") in man, (cmd, opt)
    assert '.SH "EXIT STATUS"' in man
    built_man = os.path.join(BUILD, "uffdwp.1")
    assert open(built_man).read() == man, "make man is stale"
    if shutil.which("groff"):
        g = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", built_man],
                           capture_output=True, text=True)
        assert g.returncode == 0 and not g.stderr, g.stderr


def test_make_install_installs_the_manual(built, tmp_path):
    d = tmp_path / "root"
    p = subprocess.run(["make", "-C", TOP, f"BUILD={BUILD}", f"DESTDIR={d}", "PREFIX=/usr",
                        "PLUGINDIR=/usr/lib/criu", "install"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (d / "usr/share/man/man1/uffdwp.1").read_text() == run("--help-man").stdout
    assert os.access(d / "usr/bin/uffdwp", os.X_OK)


def test_version(built):
    base = open(os.path.join(TOP, "criu-patches", "BASE")).readline().strip()
    p = run("--version")
    assert p.returncode == 0 and p.stdout.startswith("uffdwp ")
    assert base in p.stdout and "plugin" in p.stdout
    js = one_json(run("--json", "--version"))
    assert js["criu_base"] == base and js["index_version"] == 2
    plugin = os.path.exists(os.path.join(BUILD, "uffdwp_plugin.so"))
    assert (js["plugin_abi"] is not None) == plugin
    if plugin:
        assert re.fullmatch(r"\d+\.\d+\.\d+", js["plugin_abi"])


# ---------------------------------------------------------- options, --json

def test_options_and_json_anywhere(wl):
    w = wl()
    assert run("track", "start", "-t", w.pid).returncode == 0
    for args in (["--json", "track", "scan", "-t", w.pid], ["track", "scan", "-t", w.pid, "--json"],
                 ["track", "--json", "scan", "-t", w.pid], ["track", "-t", w.pid, "scan", "--json"]):
        p = run(*args)
        assert p.returncode == 0, (args, p.stderr)
        assert one_json(p)["pid"] == w.pid
    for args in (["track", "--json", "status", "-t", w.pid], ["track", "status", "--json", "-t", w.pid]):
        p = run(*args)
        assert p.returncode == 0 and one_json(p)["tracked"] is True, (args, p.stderr)
    p = run("track", "scan", "-t", w.pid, "--hold", "-v")
    assert p.returncode == 0 and p.stdout.startswith("scan ")
    gen = int(p.stdout.split()[1].rstrip(":"))
    p = run("track", "commit", str(gen), "-t", w.pid, "--json")
    assert p.returncode == 0, p.stderr
    assert one_json(p) == {"pid": w.pid, "gen": gen, "committed": True}
    p = run("track", "commit", "-t", w.pid, str(gen + 100))
    assert p.returncode == 1 and "no such scan" in p.stderr
    p = run("track", "scan", "-t", w.pid, "--hold")
    gen = int(p.stdout.split()[1].rstrip(":"))
    p = run("track", "commit", str(gen), "-t", w.pid)
    assert p.returncode == 0 and p.stdout == f"committed scan {gen} of {w.pid}\n", p.stdout
    p = run("track", "start", "--hold", "-t", w.pid)
    assert p.returncode == 2 and "--hold is not an option of 'track start'" in p.stderr


def test_scan_says_what_not_dumped_means(tracking, tmp_path):
    """A shared mapping of a file is neither dirty nor clean: the file holds
    its data. The text report says so in words; JSON gives its reason."""
    path = tmp_path / "data"
    path.write_bytes(b"\1" * 8192)
    code = ("import mmap, sys\n"
            "f = open(sys.argv[1], 'r+b')\n"
            "m = mmap.mmap(f.fileno(), 8192)\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        p.stdout.readline()
        with open(f"/proc/{p.pid}/maps") as f:
            line = next(ln for ln in f if ln.rstrip().endswith(str(path)))
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        assert run("track", "start", "-t", p.pid).returncode == 0
        out = run("track", "scan", "-t", p.pid).stdout
        assert (f"{start:012x}-{end:012x} not dumped: a shared mapping of a file, whose data "
                "the file holds") in out, out
        rep = one_json(run("--json", "track", "scan", "-t", p.pid))
        notes = [n for t in rep["tasks"] for n in t.get("notes", [])
                 if n.get("start") == start]
        assert notes and notes[0]["reason"] == "not-dumped", rep
    finally:
        run("track", "stop", "-t", p.pid)
        p.kill()
        p.wait()


@pytest.mark.parametrize("args,code,words", [
    (["track", "scan", "-t", "{gone}"], 1, "no process {gone}"),
    (["track", "start", "-t", "{gone}"], 1, "no process {gone}"),
    (["snap", "-t", "{gone}", "-D", "{tmp}/s"], 1, "no process {gone}"),
    (["track", "scan", "-t", "abc"], 2, "'abc' is not a process id"),
    (["track", "bogus", "-t", "1"], 2, "unknown track command 'bogus'"),
    (["img", "show", "{tmp}/nothing"], 1, "{tmp}/nothing"),
    (["img", "show", "{tmp}", "extra"], 2, "unexpected argument 'extra'"),
    (["img", "read", "{tmp}", "--task", "1", "7000"], 2, "NPAGES missing"),
    (["img", "merge", "{tmp}"], 2, "--to OUT is required"),
])
def test_errors_say_what_and_json_says_it_too(tracking, tmp_path, args, code, words):
    fill = {"gone": no_process(), "tmp": tmp_path}
    args = [a.format(**fill) for a in args]
    words = words.format(**fill)
    p = run(*args)
    assert p.returncode == code, p.stderr
    assert words in p.stderr, p.stderr
    # One line each, none empty, none doubled.
    lines = p.stderr.splitlines()
    assert all(ln.strip() for ln in lines), repr(p.stderr)
    assert not p.stdout
    p = run("--json", *args)
    assert p.returncode == code
    js = one_json(p)
    assert js["exit_code"] == code and words in js["error"], js
    assert js["messages"][0] == js["error"]


def test_bad_pid_is_not_called_lost(tracking):
    gone = no_process()
    p = run("track", "scan", "-t", gone)
    assert p.returncode == 1 and "lost" not in p.stderr and "dirty" not in p.stderr
    # A process that was never tracked has lost nothing either.
    p = run("track", "start", "-t", 1)
    assert p.returncode == 1 and "lost" not in p.stderr, p.stderr
    assert "cannot track 1" in p.stderr or "already tracked" in p.stderr
    # A start that failed leaves no holder and no holder files behind.
    if "already tracked" not in p.stderr:
        for kind in ("sock", "lock"):
            assert not os.path.exists(holder_file(1, kind)), kind
        assert run("track", "status", "-t", 1).returncode == 3
    p = run("track", "rate", "-t", gone, "--count", "1", "--interval", "0.1")
    assert p.returncode == 1 and f"no process {gone}" in p.stderr, p.stderr


def test_not_root_says_root(wl, tmp_path):
    if not shutil.which("setpriv"):
        pytest.skip("no setpriv to drop root")
    w = wl()
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    p = subprocess.run(nobody + [UFFDWP, "track", "start", "-t", str(w.pid)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "tracking needs root" in p.stderr, p.stderr
    assert "chmod" not in p.stderr
    assert not os.path.exists(holder_file(w.pid, "lock"))


def test_lost_scan_prints_one_document(wl):
    """A result with a non-zero exit code (tracking lost) is the only JSON printed."""
    w = wl()
    p = run("--json", "track", "scan", "-t", w.pid)
    assert p.returncode == 3
    js = one_json(p)
    assert js["tracking_lost"] is True and js["tasks"][0]["pid"] == w.pid
    p = run("--json", "track", "status", "-t", w.pid)
    assert p.returncode == 3 and one_json(p) == {"pid": w.pid, "tracked": False,
                                                 "process": True}


# ----------------------------------------------------------------- progress

def _on_tty(args, env=None):
    """Run uffdwp with stderr on a pseudo-terminal; (exit code, stdout, what the terminal got)."""
    import pty
    master, slave = pty.openpty()
    p = subprocess.Popen([UFFDWP] + [str(a) for a in args], stdout=subprocess.PIPE,
                         stderr=slave, stdin=subprocess.DEVNULL, text=True,
                         env=dict(os.environ, **(env or {})))
    os.close(slave)
    got = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        got += chunk
    os.close(master)
    out = p.stdout.read()
    return p.wait(timeout=60), out, got.decode(errors="replace")


def _phases(term):
    """The progress lines as the terminal shows them at the end: the last
    redraw of each line."""
    lines = term.replace("\r\n", "\n").split("\n")
    return [ln.split("\r")[-1].replace("\x1b[K", "") for ln in lines if "%" in ln]


def test_progress_on_a_tty_to_the_end(wl, tmp_path):
    """snap, merge and flatten show progress on a terminal, each phase shown
    ending at 100 %; nothing with --json or on a pipe. Merge and flatten of
    128 MiB can be over before the default delay of 0.5 s:
    UFFDWP_PROGRESS_DELAY=0 makes them show it at once."""
    w = wl()
    pages = 32768
    w.map(1, "anon", pages)
    w.cmd(f"write 1 0 {pages} 1")
    rc, out, term = _on_tty(["snap", "-t", w.pid, "-D", tmp_path / "s", "--level", "3"])
    assert rc == 0, term
    shown = _phases(term)
    assert shown, f"nothing shown for a snapshot of 128 MiB: {term!r}"
    for ln in shown:
        assert re.match(r"(copying|re-reading \(stopped\)|writing): 100% ", ln), shown
    assert "full snapshot" in out
    for cmd in ("merge", "flatten"):
        rc, out, term = _on_tty(["img", cmd, tmp_path / "s", "--to", tmp_path / cmd],
                                env={"UFFDWP_PROGRESS_DELAY": "0"})
        assert rc == 0, term
        shown = _phases(term)
        assert shown, f"img {cmd} showed no progress: {term!r}"
        for ln in shown:
            assert ln.startswith("writing: 100% "), ln
        # On a pipe: nothing, however long it takes.
        p = run("img", cmd, tmp_path / "s", "--to", tmp_path / f"{cmd}-pipe",
                env=dict(os.environ, UFFDWP_PROGRESS_DELAY="0"))
        assert p.returncode == 0 and "%" not in p.stderr, p.stderr
    w.cmd("write 1 0 100 2")
    rc, out, term = _on_tty(["--json", "snap", "-t", w.pid, "-D", tmp_path / "j",
                             "--parent", tmp_path / "s"], env={"UFFDWP_PROGRESS_DELAY": "0"})
    assert rc == 0 and "%" not in term and json.loads(out)["mode"] == "delta", term
    p = run("img", "merge", tmp_path / "j", "--to", tmp_path / "m2")
    assert p.returncode == 0 and "%" not in p.stderr
    w.cmd("write 1 0 100 3")
    p = run("snap", "-t", w.pid, "-D", tmp_path / "pipe", "--parent", tmp_path / "j",
            env=dict(os.environ, UFFDWP_PROGRESS_DELAY="0"))
    assert p.returncode == 0 and "%" not in p.stderr, p.stderr


def test_snap_and_stats_count_the_same_bytes(wl, tmp_path):
    """'written' in snap and in img stats is the page file plus the index;
    the ratio is the page file's in both, the index is said apart."""
    w = wl()
    w.map(1, "anon", 512)
    w.cmd("write 1 0 512 1")
    p = run("--json", "snap", "-t", w.pid, "-D", tmp_path / "s")
    snap = one_json(p)
    st = one_json(run("--json", "img", "stats", tmp_path / "s"))["images"][0]
    sizes = [os.path.getsize(tmp_path / "s" / f) for f in ("uffdwp-pages.zst", "uffdwp-index.img")]
    assert snap["bytes_written"] == st["bytes_written"] == sum(sizes)
    assert snap["pages_file"] == st["pages_file"] == sizes[0]
    assert snap["index_bytes"] == st["index_bytes"] == sizes[1]
    assert abs(snap["ratio"] - st["ratio"]) < 0.001
    text = run("img", "stats", tmp_path / "s").stdout
    assert f"written {sum(sizes)} bytes" in text and "0.000 %" not in text, text
    assert "under 0.001 %" in text or re.search(r"\(\d+\.\d{3} % of the raw size\)", text), text
    w.cmd("write 1 0 1 2")
    out = run("snap", "-t", w.pid, "-D", tmp_path / "d", "--parent", tmp_path / "s").stdout
    total = sum(os.path.getsize(tmp_path / "d" / f) for f in ("uffdwp-pages.zst",
                                                             "uffdwp-index.img"))
    assert f"written: {total} bytes (page file " in out, out
    # An image of zero pages only: an index and no data, of which it has no share.
    spec = tmp_path / "zero.spec"
    spec.write_text("task 1\nzero 0x10000 4\n")
    p = run("__debug", "img-write", "--to", tmp_path / "e", "--spec", spec)
    assert p.returncode == 0, p.stderr
    text = run("img", "stats", tmp_path / "e").stdout
    assert ": 0 data pages" in text and "(no data pages)" in text and "%" not in \
        text.split("index", 1)[1].split(";")[0], text


def test_demo_explains_its_words_and_runs_as_a_user(tracking, tmp_path):
    """The demo runs as root and says what its words mean; as a user it runs
    itself again under sudo, and says so when there is none."""
    env = dict(os.environ, BUILD=BUILD, TMPDIR=str(tmp_path))
    p = subprocess.run([os.path.join(TOP, "scripts", "demo.sh")], capture_output=True,
                       text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    for word in ("holder", "scan 1", "written:", "pending:", "not dumped:", "zero/fill:",
                 "re-read:", "in parent:"):
        assert word in out, word
    assert "0.000%" not in out and "0.000 %" not in out
    assert not os.listdir(tmp_path), "the demo left its snapshots"
    if not shutil.which("setpriv"):
        return
    # A user without sudo on the PATH.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "id", "env", "dirname"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    p = subprocess.run([shutil.which("setpriv"), "--reuid=65534", "--regid=65534",
                        "--clear-groups", str(bin_dir / "bash"),
                        os.path.join(TOP, "scripts", "demo.sh")], capture_output=True,
                       text=True, timeout=60, env=dict(env, PATH=str(bin_dir)))
    assert p.returncode == 1 and "needs root, and there is no sudo" in p.stderr, p.stderr
