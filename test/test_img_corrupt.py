# SPDX-License-Identifier: GPL-2.0
"""Damaged images and chains: every bit flip caught, truncation, reserved
bits, foreign and empty files, broken parent links, a writer killed at random
points, and a full filesystem."""
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from img_helpers import (INDEX, PAGE, PAGES, TASK, UFFDWP, check_chain,  # noqa: E402
                         page_random, page_text, random_chain, reseal_index,
                         reseal_seek_table, run, verify, write_image)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chain")
    rng = random.Random(21)
    dirs, states = random_chain(str(tmp), rng, 3)
    return dirs, states


@pytest.fixture
def work(chain, tmp_path):
    """A private copy of the chain, to damage."""
    dirs, states = chain
    root = os.path.dirname(dirs[0])
    dst = tmp_path / "c"
    shutil.copytree(root, dst, symlinks=True)
    return [str(dst / os.path.basename(d)) for d in dirs], states


def flip(path, bit):
    with open(path, "r+b") as f:
        f.seek(bit // 8)
        b = f.read(1)[0]
        f.seek(bit // 8)
        f.write(bytes([b ^ (1 << (bit % 8))]))


def expect_bad(d, *words):
    code, err = verify(d)
    assert code == 1, f"damage in {d} went unnoticed"
    for w in words:
        assert w in err, f"'{w}' not in: {err}"
    return err


def test_every_index_bit_flip_detected(work):
    dirs, _ = work
    path = os.path.join(dirs[-1], INDEX)
    nbits = os.path.getsize(path) * 8
    for bit in range(nbits):
        flip(path, bit)
        code, err = verify(dirs[-1])
        flip(path, bit)
        assert code == 1, f"bit {bit} of {path} flipped unnoticed"
        assert INDEX in err and "offset" in err, err
    assert verify(dirs[-1])[0] == 0


def test_pages_bit_flips_detected(work):
    dirs, _ = work
    rng = random.Random(5)
    for d in (dirs[0], dirs[-1]):
        path = os.path.join(d, PAGES)
        size = os.path.getsize(path)
        n = struct.unpack("<I", open(path, "rb").read()[-16:-12])[0]
        table = 8 + 12 * n + 16
        # Every bit of the seek table, and random bits of the frames.
        bits = list(range((size - table) * 8, size * 8))
        bits += [rng.randrange((size - table) * 8) for _ in range(150)]
        for bit in bits:
            flip(path, bit)
            code, err = verify(dirs[-1])
            flip(path, bit)
            assert code == 1, f"bit {bit} of {path} flipped unnoticed"
            assert PAGES in err and "offset" in err, err


def test_flip_in_frame_names_offset_and_page_read_fails(work):
    dirs, states = work
    path = os.path.join(dirs[0], PAGES)
    flip(path, 8 * 100 + 3)
    err = expect_bad(dirs[-1], PAGES, "offset 0: frame 0 checksum mismatch")
    assert dirs[0] in err


def test_truncation(work):
    dirs, _ = work
    for name in (INDEX, PAGES):
        path = os.path.join(dirs[-1], name)
        data = open(path, "rb").read()
        for cut in sorted({0, 1, 7, 16, len(data) // 2, len(data) - 8, len(data) - 1}):
            with open(path, "wb") as f:
                f.write(data[:cut])
            expect_bad(dirs[-1], name)
        with open(path, "wb") as f:
            f.write(data + b"\0" * 13)
        expect_bad(dirs[-1], name)
        with open(path, "wb") as f:
            f.write(data)
    assert verify(dirs[-1])[0] == 0


def test_reserved_bits(work):
    dirs, _ = work
    path = os.path.join(dirs[-1], INDEX)
    orig = open(path, "rb").read()
    for off, val, word in ((6, 1, "reserved"), (7, 0x80, "reserved"), (4, 3, "version"),
                           (4, 0, "version"), (5, 1, "version")):
        b = bytearray(orig)
        b[off] = val
        open(path, "wb").write(b)
        reseal_index(path)   # a correct CRC: the check itself must catch it
        expect_bad(dirs[-1], INDEX, f"offset {off & ~1}")
        expect_bad(dirs[-1], word)
    open(path, "wb").write(orig)
    path = os.path.join(dirs[-1], PAGES)
    orig = open(path, "rb").read()
    b = bytearray(orig)
    b[-12] = 1
    open(path, "wb").write(b)
    reseal_seek_table(path)
    expect_bad(dirs[-1], PAGES, "reserved")


def test_verify_names_the_file_and_the_fault(work):
    """img verify says which file is wrong and how, in text and in JSON (the
    new user got only '"error": "Bad message"', the page file missing)."""
    dirs, _ = work
    pages = os.path.join(dirs[0], PAGES)
    os.rename(pages, pages + ".away")
    p = run("img", "verify", dirs[-1], check=False)
    assert p.returncode == 1
    out = p.stdout.decode()
    assert "FAILED" in out and pages in out and "missing" in out, out
    p = run("--json", "img", "verify", dirs[-1], check=False)
    js = json.loads(p.stdout)
    assert p.returncode == 1 and js["ok"] is False
    assert pages in js["error"] and "missing" in js["error"], js
    assert js["errno"] == 74  # EBADMSG
    os.rename(pages + ".away", pages)
    flip(pages, 8 * 40)
    js = json.loads(run("--json", "img", "verify", dirs[0], check=False).stdout)
    assert pages in js["error"] and "offset" in js["error"] and "frame" in js["error"], js


def test_foreign_and_empty_files(work, tmp_path):
    dirs, _ = work
    d = dirs[-1]
    idx, pages = os.path.join(d, INDEX), os.path.join(d, PAGES)
    orig_idx, orig_pages = open(idx, "rb").read(), open(pages, "rb").read()
    zst = subprocess.run(["zstd", "-q", "-c"], input=b"hello" * 1000,
                         capture_output=True).stdout
    criu = struct.pack("<II", 0x54564319, 0x56084025) + b"\x02\x00\x00\x00\x08\x01"
    for junk in (b"", b"\0" * 64, os.urandom(300), zst, criu):
        open(idx, "wb").write(junk)
        expect_bad(d, INDEX, "offset")
    open(idx, "wb").write(orig_idx)
    for junk in (b"", b"\0" * 64, zst):
        open(pages, "wb").write(junk)
        expect_bad(d, PAGES)
    # A page file of another image: both are well formed, they do not belong together.
    open(pages, "wb").write(open(os.path.join(dirs[0], PAGES), "rb").read())
    expect_bad(d, "not this image's page file")
    open(pages, "wb").write(orig_pages)
    os.unlink(pages)
    expect_bad(d, PAGES)
    # A directory with no image at all.
    (tmp_path / "empty").mkdir()
    assert "no image" in expect_bad(str(tmp_path / "empty"))


def retime_index(path):
    """Rewrite an index as a writer of the same image later might: another
    commit time (the head's field 13, same length), CRC recomputed."""
    with open(path, "r+b") as f:
        b = bytearray(f.read())
        hlen = struct.unpack_from("<I", b, 16)[0]
        i, end = 20, 20 + hlen
        while i < end:
            key = b[i]
            i += 1
            num, wt = key >> 3, key & 7
            if num == 13 and wt == 0:
                b[i] ^= 0x02  # a low bit of the varint's first byte
                break
            if wt == 0:
                while b[i] & 0x80:
                    i += 1
                i += 1
            elif wt == 2:
                n = b[i]
                i += 1 + n
            else:
                raise AssertionError(f"unexpected wire type {wt} in the head")
        else:
            raise AssertionError("no ctime_ns in the head")
        f.seek(0)
        f.write(b)
    reseal_index(path)


def test_index_crcs_differ_and_are_the_stored_ones(work):
    """Each index's CRC names it: different indexes, different CRCs (not the
    CRC residue, which is the same for all), and a delta records its
    parent's."""
    dirs, _ = work
    crcs = []
    for d in dirs:
        js = json.loads(run("--json", "img", "show", d).stdout)
        with open(os.path.join(d, INDEX), "rb") as f:
            b = f.read()
        assert js["index_crc"] == struct.unpack_from("<I", b, len(b) - 8)[0]
        crcs.append(js["index_crc"])
        if js["depth"]:
            parent = json.loads(run("--json", "img", "show", os.path.join(d, "parent")).stdout)
            assert js["parent_crc"] == parent["index_crc"]
    assert len(set(crcs)) == len(crcs), crcs
    assert 0x658FA941 not in crcs


def test_parent_missing_mismatched_and_loops(work, tmp_path):
    dirs, states = work
    base, mid, top = dirs
    # Missing parent.
    os.rename(base, base + ".gone")
    expect_bad(top, "leads nowhere")
    os.rename(base + ".gone", base)
    # A parent that is another image (same place, other id).
    os.rename(base, base + ".orig")
    write_image(os.path.dirname(base), os.path.basename(base), states[0],
                {o: set(p) for o, p in states[0].items()})
    expect_bad(top, "written against")
    shutil.rmtree(base)
    os.rename(base + ".orig", base)
    assert verify(top)[0] == 0
    # Rewritten parent: same id, other index bytes, a valid CRC of its own.
    idx = os.path.join(base, INDEX)
    orig = open(idx, "rb").read()
    open(idx, "wb").write(orig)  # untouched still fine
    assert verify(top)[0] == 0
    retime_index(idx)
    assert verify(base)[0] == 0, "the rewritten image is sound by itself"
    expect_bad(mid, "rewritten since")
    expect_bad(top, "rewritten since")
    open(idx, "wb").write(orig)
    assert verify(top)[0] == 0
    # Loops: a self link, then top -> mid -> top.
    link = os.path.join(mid, "parent")
    target = os.readlink(link)
    os.unlink(link)
    os.symlink("../" + os.path.basename(mid), link)
    expect_bad(top, "loop")
    os.unlink(link)
    os.symlink("../" + os.path.basename(top), link)
    expect_bad(top, "loop")
    os.unlink(link)
    os.symlink(target, link)
    assert verify(top)[0] == 0
    check_chain(top, states[-1])


def test_in_parent_range_missing_from_parent(tmp_path):
    rng = random.Random(3)
    pages = {p: page_text(rng) for p in range(10, 20)}
    base = write_image(str(tmp_path), "base", {(TASK, 1): pages}, {(TASK, 1): set(pages)})
    more = dict(pages)
    more[30] = page_text(rng)
    # Page 30 claimed in parent, but the parent never had it.
    d = write_image(str(tmp_path), "d", {(TASK, 1): more}, {(TASK, 1): {12}}, parent=base)
    expect_bad(d, "does not have it")


def test_incomplete_image_reported(tmp_path):
    d = tmp_path / "inc"
    d.mkdir()
    (d / ".uffdwp-tmp-pages.zst").write_bytes(b"partial")
    err = expect_bad(str(d), "incomplete")
    assert "interrupted" in err


def big_spec(tmp, name, parent_pages, mib):
    """A spec that writes `mib` MiB of half-compressible data after parent pages."""
    data = os.path.join(tmp, f"big-{mib}.data")
    if not os.path.exists(data):
        rng = random.Random(1)
        with open(data, "wb") as f:
            for i in range(mib * 256):
                f.write(page_random(rng) if i % 2 else page_text(rng))
    spec = os.path.join(tmp, name + ".spec")
    with open(spec, "w") as f:
        f.write("task 1\n")
        if parent_pages:
            f.write(f"parent 0x100000 {parent_pages}\n")
        f.write(f"data {0x100000 + parent_pages * PAGE:#x} {mib * 256} {data} 0\n")
    return spec


def test_kill_writer_at_random_points(tmp_path):
    rng = random.Random(13)
    tmp = str(tmp_path)
    base = os.path.join(tmp, "base")
    run("__debug", "img-write", "--to", base, "--spec", big_spec(tmp, "base", 0, 4))
    spec = big_spec(tmp, "delta", 1024, 48)
    # How long a whole write takes, to spread the kills over it.
    t0 = time.time()
    run("__debug", "img-write", "--to", os.path.join(tmp, "timing"), "--parent", base, "--spec", spec,
        "--threads", "2")
    full = time.time() - t0
    shutil.rmtree(os.path.join(tmp, "timing"))
    outcomes = set()
    for i in range(12):
        d = os.path.join(tmp, f"d{i}")
        p = subprocess.Popen([UFFDWP, "__debug", "img-write", "--to", d, "--parent", base, "--spec",
                              spec, "--threads", "2"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            # The first kill comes at once: the timing run may have been
            # slower than the rest, and every later kill land after the commit.
            time.sleep(rng.uniform(0, full * 1.1) if i else 0)
            p.send_signal(signal.SIGKILL)
        finally:
            p.wait(timeout=30)
        assert verify(base)[0] == 0
        code, err = verify(d)
        if os.path.exists(os.path.join(d, INDEX)):
            assert code == 0, err
            outcomes.add("committed")
        else:
            assert code == 1
            assert any(m in err for m in ("incomplete", "no image", "Can't open", "Can't find")), err
            outcomes.add("absent")
            # The next writer cleans up after the dead one.
            if i % 4 == 0 and os.path.isdir(d):
                run("__debug", "img-write", "--to", d, "--parent", base, "--spec",
                    big_spec(tmp, "small", 1024, 1))
                assert verify(d)[0] == 0
                assert not [n for n in os.listdir(d) if n.startswith(".uffdwp-tmp")]
    assert "absent" in outcomes


def mount_tmpfs(path, size):
    os.makedirs(path)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                       capture_output=True, text=True)
    if p.returncode:
        pytest.skip(f"cannot mount a tmpfs for the ENOSPC test: {p.stderr.strip()}")


@pytest.mark.parametrize("threads", ["1", "3"])
def test_enospc_keeps_chain(tmp_path, threads):
    mnt = str(tmp_path / "small")
    mount_tmpfs(mnt, "3m")
    try:
        tmp = str(tmp_path)
        base = os.path.join(mnt, "base")
        run("__debug", "img-write", "--to", base, "--spec", big_spec(tmp, "base", 0, 1))
        assert verify(base)[0] == 0
        d = os.path.join(mnt, "delta")
        p = run("__debug", "img-write", "--to", d, "--parent", base, "--spec",
                big_spec(tmp, "delta", 256, 8), "--threads", threads, check=False)
        assert p.returncode == 1
        assert b"No space left" in p.stderr
        assert verify(base)[0] == 0
        assert not os.path.exists(d), os.listdir(d)
        # A merge that does not fit fails the same clean way.
        p = run("img", "merge", base, "--to", os.path.join(mnt, "m"), "--level", "-5",
                check=False)
        assert verify(base)[0] == 0
        if p.returncode:
            assert not os.path.exists(os.path.join(mnt, "m"))
        # Once there is room again, the same write succeeds.
        subprocess.run(["mount", "-o", "remount,size=64m", mnt], check=True)
        run("__debug", "img-write", "--to", d, "--parent", base, "--spec",
            big_spec(tmp, "delta", 256, 8))
        assert verify(d)[0] == 0
    finally:
        subprocess.run(["umount", "-l", mnt], capture_output=True)
