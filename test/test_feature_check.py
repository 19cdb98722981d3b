# SPDX-License-Identifier: GPL-2.0
"""The memory-tracking feature check under --uffd-wp-track (the series' "check, rpc:
answer mem_track for --uffd-wp-track").

Container runtimes ask `criu swrk` for mem_track (FEATURE_CHECK) before a
pre-dump and hand their configuration file along; `criu check --feature
mem_dirty_track` is the command line's form. Under --uffd-wp-track (option,
configuration file or criu_opts.uffd_wp_track) the answer must be yes only
if the kernel can and a plugin with the tracking hooks loads, with the
reason otherwise; without it, what soft-dirty says, as before.
"""
import ctypes
import mmap
import os
import socket
import struct
import subprocess
import sys

import pytest

from test_criu import criu, plugdir  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(120)


def _has_soft_dirty():
    """Whether this kernel keeps soft-dirty bits: a freshly written page has
    bit 55 set in pagemap (CONFIG_MEM_SOFT_DIRTY), else it is always clear."""
    m = mmap.mmap(-1, 4096)
    m[0] = 1
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(addr // 4096 * 8)
        ent = struct.unpack("Q", f.read(8))[0]
    return bool(ent >> 55 & 1)


@pytest.fixture(scope="module")
def rpc_pb2():
    src = os.environ.get("CRIU_SRC")
    path = os.path.join(src or "", "lib", "pycriu")
    if not src or not os.path.exists(os.path.join(path, "rpc_pb2.py")):
        pytest.skip("no $CRIU_SRC/lib/pycriu/rpc_pb2.py (a built CRIU tree with the series)")
    sys.path.insert(0, path)
    try:
        import rpc_pb2 as m
    finally:
        sys.path.remove(path)
    if "uffd_wp_track" not in m.criu_opts.DESCRIPTOR.fields_by_name:
        pytest.skip(f"{path}/rpc_pb2.py has no criu_opts.uffd_wp_track (series: \"rpc: add uffd_wp_track\")")
    return m


def _swrk(criu_path, pb, opts=None):
    """One FEATURE_CHECK for mem_track through `criu swrk`, as runc sends it."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        p = subprocess.Popen([criu_path, "swrk", str(b.fileno())], pass_fds=[b.fileno()],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        b.close()
        req = pb.criu_req(type=pb.FEATURE_CHECK)
        req.features.mem_track = True
        if opts is not None:
            req.opts.CopyFrom(opts)
        a.send(req.SerializeToString())
        resp = pb.criu_resp()
        resp.ParseFromString(a.recv(1 << 16))
    err = p.communicate(timeout=60)[1].decode()
    assert resp.success and resp.type == pb.FEATURE_CHECK, (resp, err)
    return resp.features.mem_track, resp.cr_errmsg, err


def _conf(tmp_path, *lines):
    p = tmp_path / f"criu-{len(list(tmp_path.iterdir()))}.conf"
    p.write_text("".join(x + "\n" for x in lines))
    return str(p)


@pytest.fixture
def empty(tmp_path):
    d = tmp_path / "noplugins"
    d.mkdir()
    return str(d)


def test_rpc_mem_track(criu, plugdir, empty, rpc_pb2, tmp_path):  # noqa: F811
    pb = rpc_pb2
    soft_dirty = _has_soft_dirty()
    # Without the option: soft-dirty decides, as before (no opts at all, as
    # old clients send it, or options without it).
    assert _swrk(criu, pb)[0] == soft_dirty
    o = pb.criu_opts(images_dir_fd=-1, config_file=_conf(tmp_path, f"libdir {plugdir}"))
    assert _swrk(criu, pb, o)[0] == soft_dirty
    # runc's way: everything in its configuration file.
    o = pb.criu_opts(images_dir_fd=-1, log_file="dump.log", track_mem=True,
                     config_file=_conf(tmp_path, "uffd-wp-track", f"libdir {plugdir}"))
    assert _swrk(criu, pb, o)[:2] == (True, "")
    # A network-lock line made criu swrk dereference a NULL argv (the
    # series' "config: do not read argv when parsing a configuration file").
    o = pb.criu_opts(images_dir_fd=-1, config_file=_conf(
        tmp_path, "uffd-wp-track", f"libdir {plugdir}", "network-lock skip"))
    assert _swrk(criu, pb, o)[:2] == (True, "")
    # The option over RPC, the plugins from the file.
    o = pb.criu_opts(images_dir_fd=-1, uffd_wp_track=True,
                     config_file=_conf(tmp_path, f"libdir {plugdir}"))
    assert _swrk(criu, pb, o)[0] is True
    # The file overrides RPC settings, as for the dump itself.
    o = pb.criu_opts(images_dir_fd=-1, uffd_wp_track=False,
                     config_file=_conf(tmp_path, "uffd-wp-track", f"libdir {plugdir}"))
    assert _swrk(criu, pb, o)[0] is True
    o = pb.criu_opts(images_dir_fd=-1, uffd_wp_track=True,
                     config_file=_conf(tmp_path, "no-uffd-wp-track", f"libdir {plugdir}"))
    assert _swrk(criu, pb, o)[0] == soft_dirty
    # Asked for, but no plugin that tracks: no, and why, in the answer and the log.
    o = pb.criu_opts(images_dir_fd=-1, uffd_wp_track=True,
                     config_file=_conf(tmp_path, f"libdir {empty}"))
    ok, why, err = _swrk(criu, pb, o)
    want = f"--uffd-wp-track needs a plugin that tracks memory, none was loaded from {empty}"
    assert not ok and why == want and want in err, (ok, why, err)
    # A plugin directory that does not exist.
    o = pb.criu_opts(images_dir_fd=-1,
                     config_file=_conf(tmp_path, "uffd-wp-track", f"libdir {empty}/nothing"))
    ok, why, _ = _swrk(criu, pb, o)
    assert not ok and why == f"--uffd-wp-track: the plugins in {empty}/nothing could not be loaded"
    # A configuration file that does not parse.
    o = pb.criu_opts(images_dir_fd=-1, config_file=_conf(tmp_path, "uffd-wp-track",
                                                         "no-such-option"))
    ok, why, _ = _swrk(criu, pb, o)
    assert not ok and "cannot be parsed" in why


def _check(criu_path, *args):
    r = subprocess.run([criu_path, "check", "--feature", "mem_dirty_track", *args],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout + r.stderr


def test_cli_mem_dirty_track(criu, plugdir, empty, tmp_path):  # noqa: F811
    rc, out = _check(criu)
    assert rc == (0 if _has_soft_dirty() else 1), out
    if rc:
        assert "Dirty tracking is OFF" in out
    rc, out = _check(criu, "--uffd-wp-track", "-L", plugdir)
    assert rc == 0 and "mem_dirty_track is supported" in out, out
    rc, out = _check(criu, "--config", _conf(tmp_path, "uffd-wp-track", f"libdir {plugdir}"))
    assert rc == 0, out
    rc, out = _check(criu, "--uffd-wp-track", "-L", empty)
    assert rc == 1 and f"needs a plugin that tracks memory, none was loaded from {empty}" in out, out
