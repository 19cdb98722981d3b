# SPDX-License-Identifier: GPL-2.0
"""CRIU with compressed page data (--plugin-pages, PAGES_OPEN), end to end.

The criu_wl tree of test_criu.py gets 0..3 pre-dumps and a dump with
--uffd-wp-track --plugin-pages: every pages-<id>.img becomes
uffdwp-pages-<id>.zst (zstd frames, seek table, CRC32C). The chain is
restored eagerly, lazily (criu lazy-pages) and lazily from a page server;
the restored tree checks every page itself. Needs a CRIU with the
page-data hook (criu-patches/, plugin ABI 0.4.0) and the plugin built
against it; skips otherwise.
"""
import contextlib
import os
import re
import shutil
import signal
import subprocess

import pytest

from img_helpers import criu_img_records, pb_fields
from test_criu import Tree, _free_port, _log_tail, _read, _wait_for, criu, plugdir  # noqa: F401

pytestmark = pytest.mark.timeout(240)

ZST = "uffdwp-pages-"


@pytest.fixture(scope="session")
def criu_img(criu):
    with open(criu, "rb") as f:
        if b"plugin-pages" not in f.read():
            pytest.skip(f"{criu} has no --plugin-pages (page-data hook, criu-patches-next/)")
    from test_criu import PLUGIN
    with open(PLUGIN, "rb") as f:
        if b"uffdwp-pages-%u.zst" not in f.read():
            pytest.skip(f"{PLUGIN} was built without the page-data hook (CRIU_INCLUDE "
                        "of a CRIU with plugin ABI 0.4.0)")
    return criu


class ImgTree(Tree):
    """A Tree whose images are compressed and that restores eagerly or lazily."""

    def __init__(self, *a, raw=False, **kw):
        super().__init__(*a, **kw)
        self.raw = raw
        self.helpers = []

    def run_criu(self, action, name, parent=None, extra=(), check=True, raw=None):
        raw = self.raw if raw is None else raw
        env_raw = os.environ.get("UFFDWP_CRIU_IMAGES")
        if raw:
            os.environ["UFFDWP_CRIU_IMAGES"] = "raw"
        try:
            return super().run_criu(action, name, parent, ("--plugin-pages",) + tuple(extra),
                                    check)
        finally:
            if env_raw is None:
                os.environ.pop("UFFDWP_CRIU_IMAGES", None)
            else:
                os.environ["UFFDWP_CRIU_IMAGES"] = env_raw

    def _daemon(self, cmd, d, log):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 0, f"{' '.join(cmd)}: exit {r.returncode}\n{_log_tail(d / log)}"

    def restore(self, name, lazy=None, libdir=True, check=True):
        """@lazy: None (eager), "local" (criu lazy-pages) or "remote" (via a page server)."""
        d = self.base / name
        pidfile = self.base / "restored.pid"
        if pidfile.exists():
            pidfile.unlink()
        lib = ["-L", self.plugdir] if libdir else []
        if lazy == "remote":
            port = _free_port()
            self._daemon([self.criu, "page-server", "-D", str(d), "--lazy-pages", "--port",
                          str(port), "-d", "-v4", "-o", "page-server.log",
                          "--pidfile", str(self.base / "ps.pid")] + lib, d, "page-server.log")
            self.helpers.append(self.base / "ps.pid")
            self._daemon([self.criu, "lazy-pages", "-D", str(d), "--page-server", "--address",
                          "127.0.0.1", "--port", str(port), "-d", "-v4", "-o", "lazy-pages.log",
                          "--pidfile", str(self.base / "lp.pid")] + lib, d, "lazy-pages.log")
            self.helpers.append(self.base / "lp.pid")
        elif lazy == "local":
            self._daemon([self.criu, "lazy-pages", "-D", str(d), "-d", "-v4", "-o",
                          "lazy-pages.log", "--pidfile", str(self.base / "lp.pid")] + lib,
                         d, "lazy-pages.log")
            self.helpers.append(self.base / "lp.pid")
        cmd = [self.criu, "restore", "-D", str(d), "-d", "--pidfile", str(pidfile),
               "-v4", "-o", "restore.log"] + lib
        if lazy:
            cmd.append("--lazy-pages")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        if check:
            assert r.returncode == 0, f"restore: exit {r.returncode}\n" + "\n".join(
                _log_tail(d / f) for f in ("restore.log", "lazy-pages.log", "page-server.log")
                if (d / f).exists())
            self.restored = int(_read(pidfile))
        return r, _read(d / "restore.log") or ""

    def kill_restored(self):
        if self.restored:
            from helpers import kill_tree
            kill_tree(self.restored)
            self.restored = None

    def close(self):
        super().close()
        for pf in self.helpers:
            s = _read(pf)
            if s and s.strip().isdigit():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(s), signal.SIGKILL)


@pytest.fixture
def itree(criu_img, plugdir, tmp_path):
    made = []

    def make(sub=None, **kw):
        base = tmp_path
        if sub:
            base = tmp_path / sub
            base.mkdir()
        t = ImgTree(criu_img, plugdir, base, **kw)
        made.append(t)
        return t
    yield make
    for t in made:
        t.close()


def _sizes(d):
    """(raw pages-*.img bytes, compressed uffdwp-pages-*.zst bytes) of one images dir."""
    raw = zst = 0
    for f in os.listdir(d):
        if f.startswith("pages-"):
            raw += os.path.getsize(os.path.join(d, f))
        elif f.startswith(ZST):
            zst += os.path.getsize(os.path.join(d, f))
    return raw, zst


def _migrate(t, predumps, raw_at=()):
    parent = None
    for i in range(predumps):
        _, d, _ = t.run_criu("pre-dump", f"pre{i}", parent, raw=True if i in raw_at else None)
        parent = d.name
        t.do_step()
    _, d, log = t.run_criu("dump", "dump", parent, raw=True if predumps in raw_at else None)
    return d, log


def _verify(t):
    parent, child = t.verify(t.restored)
    assert parent == f"ok {t.step}" and child == f"ok {t.step}", (parent, child)


def _report(name, pairs):
    raw = sum(p[0] for p in pairs)
    zst = sum(p[1] for p in pairs)
    print(f"\n{name}: raw {raw} bytes, compressed {zst} bytes"
          + (f", ratio {raw / zst:.2f}" if zst else ""))


@pytest.mark.parametrize("predumps", [0, 1, 2, 3])
@pytest.mark.parametrize("lazy", [None, "local"], ids=["eager", "lazy"])
def test_compressed_chain(itree, predumps, lazy):
    t = itree()
    d, _ = _migrate(t, predumps)
    for x in t.dumps:
        raw, zst = _sizes(x)
        assert raw == 0 and zst > 0, (x, raw, zst)
    r, log = t.restore(d.name, lazy=lazy)
    _verify(t)
    if lazy:
        # Lazy pages came out of the compressed chain through the plugin.
        lp = _read(d / "lazy-pages.log") or ""
        assert "Read page from plugin" in lp, _log_tail(d / "lazy-pages.log")
        assert "uffdwp: criu: pages image" in lp


def test_sizes_compressed_vs_raw(itree):
    """The same migration written raw and compressed: both restore, sizes reported."""
    sizes = {}
    for raw in (True, False):
        t = itree(sub="raw" if raw else "zst", raw=raw)
        d, _ = _migrate(t, 2)
        sizes[raw] = [_sizes(x) for x in t.dumps]
        t.restore(d.name)
        _verify(t)
        t.close()
    raw_total = sum(r for r, _ in sizes[True])
    zst_total = sum(z for _, z in sizes[False])
    assert sum(z for _, z in sizes[True]) == 0 and sum(r for r, _ in sizes[False]) == 0
    print(f"\ncriu_wl, 2 pre-dumps + dump: CRIU raw {raw_total} bytes, "
          f"compressed {zst_total} bytes ({raw_total / zst_total:.2f}x)")
    print("  per layer raw:", [r for r, _ in sizes[True]], "compressed:",
          [z for _, z in sizes[False]])
    # criu_wl fills its memory with per-page patterns that compress a little.
    assert zst_total < raw_total


def _zstd_raw_len(path):
    """Bytes `zstd -d` (not our reader) decodes from a page file."""
    r = subprocess.run(["zstd", "-dc", path], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return len(r.stdout)


@pytest.mark.skipif(not shutil.which("zstd"), reason="no zstd command (Debian: zstd)")
def test_final_dump_stores_frames(itree):
    """The frozen final dump stores its frames (zstd raw blocks, a copy);
    every layer is zstd that zstd itself decodes, and the chain restores."""
    t = itree()
    d, _ = _migrate(t, 1)
    pre, final = t.dumps[0], t.dumps[-1]
    for x, stored in ((pre, False), (final, True)):
        files = [os.path.join(x, f) for f in os.listdir(x) if f.startswith(ZST)]
        assert files, x
        for f in files:
            size, raw = os.path.getsize(f), _zstd_raw_len(f)
            assert raw > 0 and raw % 4096 == 0, (f, raw)
            # Stored: the raw bytes and a few header bytes per frame.
            if stored:
                assert raw <= size <= raw * 1.01 + 4096, (f, raw, size)
    t.restore(d.name)
    _verify(t)


@pytest.mark.parametrize("raw_at", [(0,), (1,), (2,)], ids=["raw-base", "raw-middle", "raw-top"])
@pytest.mark.parametrize("lazy", [None, "local"], ids=["eager", "lazy"])
def test_mixed_chain(itree, raw_at, lazy):
    """A chain mixing CRIU's raw layers and compressed ones restores."""
    t = itree()
    d, _ = _migrate(t, 2, raw_at=raw_at)
    for i, x in enumerate(t.dumps):
        raw, zst = _sizes(x)
        assert (raw > 0 and zst == 0) if i in raw_at else (raw == 0 and zst > 0), (x, raw, zst)
    t.restore(d.name, lazy=lazy)
    _verify(t)


def test_missing_plugin(itree):
    """Compressed images name the plugin in the inventory: restore without it refuses."""
    t = itree()
    d, _ = _migrate(t, 1)
    r, log = t.restore(d.name, libdir=False, check=False)
    assert r.returncode != 0
    assert "Missing required plugin: uffdwp" in log, log[-2000:]
    # A dump standing on a compressed parent needs the plugin even if it wrote raw.
    t.close()
    t2 = itree(sub="t2")
    d2, _ = _migrate(t2, 1, raw_at=(1,))
    r, log = t2.restore(d2.name, libdir=False, check=False)
    assert r.returncode != 0 and "Missing required plugin: uffdwp" in log


def _corrupt(path, where):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        if where == "frame":
            f.seek(size // 3)
            b = f.read(1)
            f.seek(size // 3)
            f.write(bytes([b[0] ^ 0x5a]))
        elif where == "table":
            f.seek(size - 20)
            b = f.read(1)
            f.seek(size - 20)
            f.write(bytes([b[0] ^ 0x01]))
        elif where == "truncated":
            f.truncate(size // 2)


def _largest_zst(d):
    files = [f for f in os.listdir(d) if f.startswith(ZST)]
    return os.path.join(d, max(files, key=lambda f: os.path.getsize(os.path.join(d, f))))


@pytest.mark.parametrize("where", ["frame", "table", "truncated"])
@pytest.mark.parametrize("layer", ["dump", "pre0"])
def test_corrupt_refused(itree, where, layer):
    """A damaged compressed layer: restore fails with a message naming the file, no crash."""
    t = itree()
    d, _ = _migrate(t, 1)
    bad = _largest_zst(t.base / layer)
    _corrupt(bad, where)
    r, log = t.restore(d.name, check=False)
    assert r.returncode != 0, "restore from a corrupt image succeeded"
    assert r.returncode < 128 and "BUG" not in log, log[-3000:]
    assert os.path.basename(bad) in log, log[-3000:]
    assert ("checksum mismatch" in log or "seek table" in log or "too short" in log
            or "cut short" in log), log[-3000:]
    # The original tree was killed by the dump; nothing restored is left running.
    t.restored = None


def _pid_gone(pid):
    return not os.path.exists(f"/proc/{pid}") or \
        (_read(f"/proc/{pid}/stat") or " x Z").split()[2] == "Z"


@pytest.mark.parametrize("at", [0.33, 0.9])
@pytest.mark.parametrize("verify", [False, True], ids=["on-read", "at-open"])
def test_corrupt_refused_lazy(itree, at, verify, monkeypatch):
    """Lazy restore of a chain with a damaged frame in its base layer. The restore
    refuses it when it reads the page itself; lazy-pages when it reads it on a fault or
    in the background (each frame's CRC is checked as it is read), and then poisons the
    pages it did not serve, so the tree dies of SIGBUS instead of running on zeros.
    With UFFDWP_CRIU_VERIFY=1, lazy-pages checks every frame when it opens the chain
    and the restore fails before the tree runs. Never bad memory."""
    if verify:
        monkeypatch.setenv("UFFDWP_CRIU_VERIFY", "1")
    t = itree()
    d, _ = _migrate(t, 1)
    bad = _largest_zst(t.base / "pre0")
    size = os.path.getsize(bad)
    with open(bad, "r+b") as f:
        f.seek(int(size * at))
        b = f.read(1)
        f.seek(int(size * at))
        f.write(bytes([b[0] ^ 0x5a]))
    r, log = t.restore(d.name, lazy="local", check=False)
    if r.returncode == 0:
        # The tree runs: checking its memory reaches the damaged page, which must
        # kill the task that holds it (SIGBUS on a poisoned page), never pass.
        assert not verify, "lazy-pages checked every frame at open, yet the restore ran"
        pid = int(_read(t.base / "restored.pid"))
        t.restored = pid
        os.kill(pid, signal.SIGUSR2)
        _wait_for(lambda: _pid_gone(pid), "restored tree gone", 60)
        parent, child = _read(t.wl / "verify") or "", _read(t.wl / "verify.child") or ""
        assert not parent.startswith("ok") or not child.startswith("ok"), \
            f"restored tree ran on a damaged image: {parent!r} {child!r}"
        t.restored = None
    lp_pid = int((_read(t.base / "lp.pid") or "0").strip() or 0)
    if lp_pid:
        _wait_for(lambda: _pid_gone(lp_pid), "lazy-pages gone", 60)
    lp = _read(d / "lazy-pages.log") or ""
    both = log + lp
    assert "checksum mismatch" in both and os.path.basename(bad) in both, both[-3000:]
    if r.returncode == 0:
        assert "they are poisoned" in lp, lp[-3000:]


@contextlib.contextmanager
def _sysctl(name, value):
    path = "/proc/sys/" + name.replace(".", "/")
    old = _read(path).strip()
    try:
        if int(old) < int(value):
            with open(path, "w") as f:
                f.write(str(value))
        yield
    finally:
        with open(path, "w") as f:
            f.write(old)


@pytest.mark.parametrize("predumps", [0, 2])
def test_remote_lazy(itree, predumps):
    """criu lazy-pages --page-server against a page server serving the compressed images."""
    t = itree()
    d, _ = _migrate(t, predumps)
    # Remote lazy-pages: pipe_read_dest_init() (CRIU's page-pipe.c) asks for a
    # PIPE_MAX_SIZE (4 MiB) pipe, above fs.pipe-max-size's 1 MiB default.
    with _sysctl("fs.pipe-max-size", 4194304):
        t.restore(d.name, lazy="remote")
        _verify(t)
    ps = _read(d / "page-server.log") or ""
    assert "uffdwp: criu: pages image" in ps, _log_tail(d / "page-server.log")


def test_page_server_records_plugin(itree):
    """Pages written compressed by a page server: the dump's inventory names the
    plugin (the dump cannot see the server's writes), so restore needs it."""
    t = itree()
    parent = None
    for name in ("pre0", "dump"):
        d = t.base / name
        d.mkdir()
        port = _free_port()
        srv = [t.criu, "page-server", "-D", str(d), "--port", str(port), "--uffd-wp-track",
               "--plugin-pages", "-L", t.plugdir, "-d", "-v4", "-o", "page-server.log"]
        if parent:
            srv += ["--prev-images-dir", f"../{parent}"]
        t._daemon(srv, d, "page-server.log")
        cmd = [t.criu, "dump" if name == "dump" else "pre-dump", "-t", str(t.root), "-D", str(d),
               "-L", t.plugdir, "-v4", "-o", "criu.log", "--uffd-wp-track", "--plugin-pages",
               "--page-server", "--address", "127.0.0.1", "--port", str(port)]
        if parent:
            cmd += ["--prev-images-dir", f"../{parent}"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 0, _log_tail(d / "criu.log") + _log_tail(d / "page-server.log")
        assert any(f.startswith(ZST) for f in os.listdir(d)), os.listdir(d)
        assert not any(f.startswith("pages-") for f in os.listdir(d)), os.listdir(d)
        parent = name
        if name != "dump":
            t.do_step()
    r, log = t.restore("dump", libdir=False, check=False)
    assert r.returncode != 0 and "Missing required plugin: uffdwp" in log, log[-2000:]
    t.restore("dump")
    _verify(t)


def _tree_digest(root):
    import hashlib
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p) and not f.endswith(".log"):
                with open(p, "rb") as fh:
                    out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def test_dedup_refuses_compressed(itree):
    """criu dedup (which loads no plugins) says our layers cannot be deduplicated
    and changes nothing; the chain still restores."""
    t = itree()
    d, _ = _migrate(t, 2)
    before = _tree_digest(t.base)
    r = subprocess.run([t.criu, "dedup", "-D", str(d), "-v4", "-o", "dedup.log"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    log = _read(d / "dedup.log") or ""
    assert r.returncode != 0, log[-2000:]
    assert "cannot be deduplicated" in log, log[-2000:]
    assert _tree_digest(t.base) == before
    t.restore(d.name)
    _verify(t)


# ------------------------------------------- lazy restore of the whole chain (restore of parent pages on fault)

PAGE = 4096

MAP_PRIVATE, MAP_ANONYMOUS, MAP_LOCKED, MAP_HUGETLB = 0x02, 0x20, 0x2000, 0x40000
VMA_AREA_VSYSCALL, VMA_AREA_VDSO, VMA_AREA_VVAR = 1 << 2, 1 << 3, 1 << 12
PE_PARENT, PE_LAZY = 1, 2


def _pagemap(d, pid):
    """[(vaddr, nr_pages, flags)] of pagemap-PID.img in d."""
    out = []
    for e in criu_img_records(os.path.join(d, f"pagemap-{pid}.img"))[1:]:
        nr = (e.get(5) or e[2])[0]
        flags = e[4][0] if 4 in e else (PE_PARENT if e.get(3, [0])[0] else 4)
        out.append((e[1][0], nr, flags))
    return out


def _vma_can_be_lazy(v):
    flags, status = v[6][0], v[7][0]
    return (flags & MAP_ANONYMOUS and flags & MAP_PRIVATE and not flags & MAP_LOCKED
            and not flags & MAP_HUGETLB
            and not status & (VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL))


def _expected_lazy(top, pid):
    """What the images say lazy-pages must serve to task PID: (lazy pages, of them held by
    parent images). A page is lazy where the image that holds it marked it so (PE_LAZY)
    and its VMA can be lazy at the dump. The restore reads the others itself."""
    layers, d = [], str(top)
    while True:
        layers.append({v: (nr, fl) for v, nr, fl in _pagemap(d, pid)})
        if not os.path.exists(os.path.join(d, "parent")):
            break
        d = os.path.realpath(os.path.join(d, "parent"))
    pages = [dict() for _ in layers]
    for k, ents in enumerate(layers):
        for v, (nr, fl) in ents.items():
            for j in range(nr):
                pages[k][v + j * PAGE] = fl
    mm = criu_img_records(os.path.join(str(top), f"mm-{pid}.img"))[0]
    vmas = [pb_fields(v) for v in mm.get(14, [])]
    lazy = parent = 0
    for addr, fl in pages[0].items():
        vma = next((v for v in vmas if v[1][0] <= addr < v[2][0]), None)
        if fl & PE_LAZY:
            lazy += 1
            continue
        if not fl & PE_PARENT or vma is None or not _vma_can_be_lazy(vma):
            continue
        for k in range(1, len(pages)):
            owner = pages[k].get(addr)
            assert owner is not None, f"{addr:#x} in parent, but no parent has it"
            if not owner & PE_PARENT:
                if owner & PE_LAZY:
                    lazy += 1
                    parent += 1
                break
    return lazy, parent


LP_FOUND = r"uffd: (\d+)-\d+: Found (\d+) pages to be handled by UFFD"
LP_PARENT = r"uffd: (\d+)-\d+: (\d+) of the lazy pages are held by parent images"
LP_DONE = r"uffd: (\d+)-\d+: UFFD transferred pages: \((\d+)/(\d+)\)"


def _per_task(regex, text):
    return {int(m[0]): tuple(int(x) for x in m[1:]) for m in re.findall(regex, text)}


def _wait_lazy_pages_done(t, timeout=60):
    """lazy-pages exits once every page of every task is in."""
    pid = int((_read(t.base / "lp.pid") or "0").strip() or 0)
    assert pid, "no lazy-pages pid"
    _wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
              (_read(f"/proc/{pid}/stat") or " x Z").split()[2] == "Z",
              "lazy-pages to transfer every page", timeout)


def _check_lazy_chain(t, d, predumps):
    """Every lazy page of every layer came from lazy-pages, none from the restore."""
    lp = _read(d / "lazy-pages.log") or ""
    rst = _read(d / "restore.log") or ""
    found, parent, done = (_per_task(r, lp) for r in (LP_FOUND, LP_PARENT, LP_DONE))
    assert found and set(found) == set(done), (found, done, _log_tail(d / "lazy-pages.log"))
    for pid, (n,) in found.items():
        want_lazy, want_parent = _expected_lazy(d, pid)
        assert n == want_lazy, (pid, n, want_lazy)
        # Every task of criu_wl has private anonymous memory to restore lazily.
        assert n > 0, (pid, "no lazy pages", _log_tail(d / "lazy-pages.log"))
        assert parent[pid] == (want_parent,), (pid, parent[pid], want_parent)
        # All of them came on fault or by the background fill, none was dropped.
        assert done[pid] == (n, n), (pid, done[pid])
        if predumps:
            # Most memory is in the parents: upstream CRIU read all of it.
            assert want_parent > n // 2, (pid, want_parent, n)
    lazy_rst = _per_task(r"(\d+): nr_lazy: +(\d+)", rst)
    assert {p: v[0] for p, v in lazy_rst.items()} == {p: v[0] for p, v in found.items()}, \
        (lazy_rst, found)
    if predumps:
        assert "in parent" in rst and "Lazy restore skips" in rst


@pytest.mark.parametrize("predumps", [1, 2, 3])
@pytest.mark.parametrize("images", ["compressed", "raw", "mixed"])
@pytest.mark.parametrize("where", ["local", "remote"])
def test_lazy_chain(itree, where, images, predumps):
    """A chain of 1-3 pre-dumps and a dump, CRIU's raw images, ours or both by turns,
    restored lazily: every page that some layer holds as lazy comes from lazy-pages (on
    fault or by the background fill), exactly those the images say, and the tree checks
    every page. Remote: lazy-pages asks criu page-server --lazy-pages, which reads the
    chain, also for the pages of the parents; it needs no big pipes any more."""
    raw_at = {"compressed": (), "raw": tuple(range(predumps + 1)),
              "mixed": tuple(range(0, predumps + 1, 2))}[images]
    t = itree()
    d, _ = _migrate(t, predumps, raw_at=raw_at)
    t.restore(d.name, lazy=where)
    _wait_lazy_pages_done(t)
    _verify(t)
    _check_lazy_chain(t, d, predumps)
    lp = _read(d / "lazy-pages.log") or ""
    if where == "remote":
        ps = _read(d / "page-server.log") or ""
        # The page server read the pages in parent, lazy-pages read no image itself.
        assert "Read from parent" in ps and "Read from parent" not in lp, \
            _log_tail(d / "page-server.log")
        assert "Read page from self" not in lp and "Read page from plugin" not in lp
        if images != "raw":
            assert "Read page from plugin" in ps
    else:
        assert "Read from parent" in lp
        if images != "raw":
            assert "Read page from plugin" in lp


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="criu_wl park is x86-64 only")
def test_lazy_stack_page_aligned(itree):
    """A thread frozen with its stack pointer on a page boundary: only the page that holds
    it is restored eagerly, the rest of the tree's memory stays lazy. (CRIU took the
    page offset for the page, so such a task had no lazy page at all.)"""
    t = itree(args=("park",))
    sp = int(_read(t.wl / "park"), 16)
    d, _ = _migrate(t, 1)
    flags = {}
    for layer in (d, d / "parent"):
        for v, nr, fl in _pagemap(layer, 1):
            for j in range(nr):
                if not fl & PE_PARENT:  # the layer that holds the page says
                    flags.setdefault(v + j * PAGE, fl)
    assert flags.get(sp) == 4, f"stack page {sp:#x}: flags {flags.get(sp)}"
    below = [flags.get(sp - k * PAGE) for k in (1, 2)]
    assert all(f is not None and f & PE_LAZY for f in below), (f"{sp:#x}", below)
    t.restore(d.name, lazy="local")
    _wait_lazy_pages_done(t)
    _verify(t)
    _check_lazy_chain(t, d, 1)


def test_lazy_dump_chain(itree):
    """zdtm's --lazy-migrate with pre-dumps: the dump itself serves the pages it dumped
    (criu dump --lazy-pages) and has none of its parents; lazy-pages, told so, reads the
    pages in parent from the (compressed) parent images itself."""
    t = itree()
    parent = None
    for i in range(2):
        _, d, _ = t.run_criu("pre-dump", f"pre{i}", parent)
        parent = d.name
        t.do_step()
    d = t.base / "dump"
    d.mkdir()
    port = _free_port()
    cmd = [t.criu, "dump", "-t", str(t.root), "-D", str(d), "-L", t.plugdir, "-v4", "-o",
           "dump.log", "--uffd-wp-track", "--plugin-pages", "--prev-images-dir",
           f"../{parent}", "--lazy-pages", "--port", str(port)]
    # The lazy dump serves pages through pipes of PIPE_MAX_SIZE (4 MiB) too.
    with _sysctl("fs.pipe-max-size", 4194304):
        dump = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            _wait_for(lambda: "Starting lazy pages server" in (_read(d / "dump.log") or "")
                      or dump.poll() is not None, "the lazy dump's page server", 60)
            assert dump.poll() is None, _log_tail(d / "dump.log")
            lp = [t.criu, "lazy-pages", "-D", str(d), "--page-server", "--address",
                  "127.0.0.1", "--port", str(port), "-d", "-v4", "-o", "lazy-pages.log",
                  "--pidfile", str(t.base / "lp.pid"), "-L", t.plugdir]
            _wait_for(lambda: subprocess.run(lp, capture_output=True, timeout=60,
                                             stdin=subprocess.DEVNULL).returncode == 0,
                      "lazy-pages connected", 30)
            t.helpers.append(t.base / "lp.pid")
            r = subprocess.run([t.criu, "restore", "-D", str(d), "-d", "--pidfile",
                                str(t.base / "restored.pid"), "-v4", "-o", "restore.log",
                                "-L", t.plugdir, "--lazy-pages"], capture_output=True,
                               text=True, timeout=120, stdin=subprocess.DEVNULL)
            assert r.returncode == 0, _log_tail(d / "restore.log") + \
                _log_tail(d / "lazy-pages.log")
            t.restored = int(_read(t.base / "restored.pid"))
            _wait_lazy_pages_done(t)
            assert dump.wait(timeout=60) == 0, _log_tail(d / "dump.log")
        finally:
            if dump.poll() is None:
                dump.kill()
                dump.wait()
    _verify(t)
    _check_lazy_chain(t, d, 2)
    lp = _read(d / "lazy-pages.log") or ""
    assert "The page server has no pages of parent images, reading them here" in lp
    assert "Read page from plugin" in lp


def test_bench_lazy_quick(criu_img, tmp_path):
    """scripts/bench-lazy on a small chain: it runs, checks memory, and reports every figure."""
    import json
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "bench-lazy.json"
    p = subprocess.run([os.path.join(root, "scripts", "bench-lazy"), "--criu", criu_img,
                        "--size", "64M", "--predumps", "1", "--runs", "1", "--only", "bench_wl",
                        "--workdir", str(tmp_path), "--out", str(out)],
                       capture_output=True, text=True, timeout=200, stdin=subprocess.DEVNULL,
                       env=dict(os.environ, UFFDWP_BUILD=os.environ.get("UFFDWP_BUILD", "")
                                or os.path.join(root, "build")))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rep = json.loads(out.read_text())
    (r,) = rep["results"]
    s = r["summary"]
    for k in ("eager_s", "runs_s", "answers_s", "all_in_s", "fault_p50_us", "fault_p99_us",
              "service_p50_us", "lazy_pages", "parent_pages", "eager_over_runs"):
        assert s[k] is not None, k
    assert s["parent_pages"] > 0 and s["transferred_pages"] == s["lazy_pages"], s
    assert all(x["verify"].startswith("ok ") for x in r["eager"] + r["lazy"])
    assert "eager/runs" in p.stdout
