# SPDX-License-Identifier: GPL-2.0
"""Image round trips: random and real memory, chains against a ground-truth
model, merge and flatten equal to the chain, golden fixtures."""
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from img_helpers import (PAGE, SHMEM, TASK, check_chain, expected_bytes,  # noqa: E402
                         layout, random_chain, read_criu_pagemap, read_object, run,
                         run_json, verify, write_image, page_text, page_random)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def test_round_trip_random(tmp_path):
    rng = random.Random(1)
    state = {(TASK, 42): {}}
    pages = state[(TASK, 42)]
    for p in range(0x1000, 0x1000 + 700):
        pages[p] = page_random(rng) if p % 3 else page_text(rng)
    for p in range(0x5000, 0x5000 + 50):
        pages[p] = bytes([p % 4]) * PAGE
    d = write_image(str(tmp_path), "a", state, {(TASK, 42): set(pages)})
    assert verify(d)[0] == 0
    check_chain(d, state)
    js = run_json("img", "show", d)
    assert js["depth"] == 0 and "parent_id" not in js
    assert js["data_pages"] == 700
    assert js["fill_pages"] == 50


@pytest.mark.parametrize("opts", [["--frame-size", "4096"], ["--frame-size", "256K"],
                                  ["--threads", "2"], ["--threads", "3", "--level", "5"],
                                  ["--level", "-3"]])
def test_round_trip_options(tmp_path, opts):
    rng = random.Random(2)
    pages = {p: page_text(rng) if p % 2 else page_random(rng) for p in range(100, 400)}
    state = {(SHMEM, 3): pages}
    d = write_image(str(tmp_path), "a", state, {(SHMEM, 3): set(pages)}, opts=opts)
    assert verify(d)[0] == 0
    check_chain(d, state)


def test_empty_image(tmp_path):
    d = write_image(str(tmp_path), "a", {}, {})
    assert verify(d)[0] == 0
    js = run_json("img", "show", d)
    assert js["objects"] == [] and js["frames"] == 0


@pytest.mark.parametrize("length", [1, 2, 3, 5, 10])
def test_chain_model(tmp_path, length):
    rng = random.Random(100 + length)
    dirs, states = random_chain(str(tmp_path), rng, length)
    for d, st in zip(dirs, states):
        check_chain(d, st)
    assert verify(dirs[-1])[0] == 0
    js = run_json("img", "verify", dirs[-1])
    assert js["ok"] and len(js["images"]) == length
    assert run_json("img", "show", dirs[-1])["depth"] == length - 1


def test_merge_equals_chain(tmp_path):
    rng = random.Random(7)
    dirs, states = random_chain(str(tmp_path), rng, 6, opts=["--threads", "2"])
    out = str(tmp_path / "merged")
    run("img", "merge", dirs[-1], "--to", out, "--frame-size", "128K")
    assert verify(out)[0] == 0
    js = run_json("img", "show", out)
    assert js["depth"] == 0 and js["parent_pages"] == 0
    check_chain(out, states[-1])
    # The chain it came from is untouched.
    assert verify(dirs[-1])[0] == 0
    # merging into an existing image is refused
    p = run("img", "merge", dirs[-1], "--to", out, check=False)
    assert p.returncode == 1 and b"already holds an image" in p.stderr


def test_flatten_equals_chain(tmp_path):
    rng = random.Random(8)
    dirs, states = random_chain(str(tmp_path), rng, 4)
    out = tmp_path / "criu"
    out.mkdir()  # empty: taken
    run("img", "flatten", dirs[-1], "--to", out)
    for (kind, oid), pages in states[-1].items():
        name = f"pagemap-{oid}.img" if kind == TASK else f"pagemap-shmem-{oid}.img"
        assert read_criu_pagemap(str(out), name) == pages
    assert not [n for n in os.listdir(out) if n.startswith(".uffdwp-tmp")]
    # A directory used before is refused, untouched: its old pages images
    # would lie next to pagemaps that do not name them.
    before = {n: (out / n).read_bytes() for n in os.listdir(out)}
    p = run("img", "flatten", dirs[0], "--to", out, check=False)
    assert p.returncode == 1 and b"is not empty" in p.stderr, p.stderr
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before
    # A new directory is made.
    run("img", "flatten", dirs[0], "--to", tmp_path / "new")
    assert sorted(os.listdir(tmp_path / "new")) == sorted(
        n for n in before if n.startswith("pagemap-") or n.startswith("pages-"))


def test_failed_flatten_and_merge_leave_nothing(tmp_path):
    """A chain that cannot be read to the end (a damaged frame of the last
    object) makes no files: flatten and merge are all or nothing."""
    rng = random.Random(9)
    dirs, _ = random_chain(str(tmp_path), rng, 2)
    pages = os.path.join(dirs[0], "uffdwp-pages.zst")
    with open(pages, "r+b") as f:
        f.seek(20)
        b = f.read(1)
        f.seek(20)
        f.write(bytes([b[0] ^ 0x10]))
    for cmd in ("flatten", "merge"):
        made = tmp_path / f"{cmd}-new"
        p = run("img", cmd, dirs[-1], "--to", made, check=False)
        assert p.returncode == 1 and b"checksum mismatch" in p.stderr, p.stderr
        assert not made.exists(), os.listdir(made)
        empty = tmp_path / f"{cmd}-empty"
        empty.mkdir()
        p = run("img", cmd, dirs[-1], "--to", empty, check=False)
        assert p.returncode == 1 and not os.listdir(empty), os.listdir(empty)


def test_parent_link_is_relative(tmp_path):
    rng = random.Random(9)
    (tmp_path / "a").mkdir()
    dirs, states = random_chain(str(tmp_path / "a"), rng, 3)
    assert not os.readlink(os.path.join(dirs[1], "parent")).startswith("/")
    # Moving the whole chain keeps it readable.
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
    moved = str(tmp_path / "b" / os.path.basename(dirs[-1]))
    assert verify(moved)[0] == 0
    check_chain(moved, states[-1])


def test_existing_parent_link_kept(tmp_path):
    """CRIU makes the "parent" link itself: the writer keeps it if it is right."""
    rng = random.Random(10)
    pages = {p: page_text(rng) for p in range(10)}
    base = write_image(str(tmp_path), "base", {(TASK, 1): pages}, {(TASK, 1): set(pages)})
    (tmp_path / "d").mkdir()
    os.symlink("../base", tmp_path / "d" / "parent")
    d = write_image(str(tmp_path), "d", {(TASK, 1): pages}, {(TASK, 1): {3}}, parent=base)
    assert os.readlink(os.path.join(d, "parent")) == "../base"
    assert verify(d)[0] == 0
    # A link that leads elsewhere is not overwritten.
    other = write_image(str(tmp_path), "other", {(TASK, 1): pages}, {(TASK, 1): set(pages)})
    (tmp_path / "e").mkdir()
    os.symlink("../other", tmp_path / "e" / "parent")
    p = write_image(str(tmp_path), "e", {(TASK, 1): pages}, {(TASK, 1): {3}}, parent=base,
                    check=False)
    assert p.returncode == 1 and b"parent" in p.stderr
    assert not os.path.exists(tmp_path / "e" / "uffdwp-index.img")
    del other


def test_writer_refuses_bad_input(tmp_path):
    spec = tmp_path / "s"
    spec.write_text("task 1\nzero 0x2000 1\nzero 0x1000 1\n")
    p = run("__debug", "img-write", "--to", tmp_path / "x", "--spec", spec, check=False)
    assert p.returncode != 0 and b"out of" in p.stderr
    assert not (tmp_path / "x").exists()
    spec.write_text("task 1\nparent 0x1000 1\n")
    p = run("__debug", "img-write", "--to", tmp_path / "y", "--spec", spec, check=False)
    assert p.returncode != 0 and b"no parent" in p.stderr
    p = run("__debug", "img-write", "--to", tmp_path / "z", "--spec", spec, "--frame-size", "5000",
            check=False)
    assert p.returncode != 0


def test_page_source_errors(tmp_path):
    rng = random.Random(11)
    pages = {p: page_text(rng) for p in range(16, 32)}
    d = write_image(str(tmp_path), "a", {(TASK, 5): pages}, {(TASK, 5): set(pages)})
    p = run("img", "read", d, "--task", 5, f"{15 * PAGE:#x}", 2, check=False)
    assert p.returncode == 1 and b"has no page" in p.stderr
    p = run("img", "read", d, "--task", 6, f"{16 * PAGE:#x}", 1, check=False)
    assert p.returncode == 1
    assert run("img", "read", d, "--task", 5, f"{20 * PAGE:#x}", 3).stdout == \
        pages[20] + pages[21] + pages[22]
    # An address as img show prints it: hexadecimal without 0x.
    shown = run("img", "show", d).stdout.decode()
    first = shown.split("task 5:")[1].splitlines()[1].split()[0].split("-")[0]
    assert first == f"{16 * PAGE:012x}"
    assert run("img", "read", d, "--task", 5, first, 1).stdout == pages[16]
    p = run("img", "read", d, "--task", 5, "12345", 1, check=False)
    assert p.returncode == 2 and b"page boundary" in p.stderr
    p = run("img", "read", d, "--task", 5, "zz", 1, check=False)
    assert p.returncode == 2 and b"not an address" in p.stderr


# ---------------------------------------------------------------- real memory

PY_WORKLOAD = r"""
import os, random, sys
rng = random.Random(5)
objs = [{"k%d" % i: [rng.random() for _ in range(20)], "s": "x" * rng.randrange(100)}
        for i in range(20000)]
blob = bytearray(rng.randbytes(3 << 20))
zeros = bytearray(8 << 20)
print("ready", flush=True)
sys.stdin.readline()
"""


def proc_snapshot(pid, maps):
    out = {}
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for lo, hi in maps:
            for a in range(lo, hi, PAGE):
                try:
                    mem.seek(a)
                    out[a // PAGE] = mem.read(PAGE)
                except OSError:
                    pass
    return out


def readable_maps(pid):
    maps = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            name = parts[5] if len(parts) > 5 else ""
            if parts[1][0] != "r" or name.startswith("[vvar") or name == "[vsyscall]":
                continue
            maps.append((lo, hi))
    return maps


@pytest.fixture
def python_proc():
    p = subprocess.Popen(["/usr/bin/python3", "-c", PY_WORKLOAD], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline().split()[0] == b"ready"
        os.kill(p.pid, signal.SIGSTOP)
        time.sleep(0.05)
        yield p.pid
    finally:
        p.kill()
        p.wait(timeout=10)


def test_round_trip_real_memory(tmp_path, python_proc):
    pid = python_proc
    d = str(tmp_path / "full")
    run("__debug", "img-write", "--to", d, "--from-pid", pid, "--threads", "2")
    assert verify(d)[0] == 0
    truth = proc_snapshot(pid, readable_maps(pid))
    lay = layout(d)[(TASK, pid)]
    assert lay == set(truth)
    assert read_object(d, TASK, pid) == expected_bytes(truth)
    st = run_json("img", "stats", d)["images"][0]
    assert st["ratio"] > 1.5
    assert st["index_bytes"] < 0.01 * st["raw_bytes"]

    # A delta over the heap-like mappings: the dirty ones read again, the
    # rest in parent; the chain reads back as the process is.
    maps = readable_maps(pid)
    dirty = ",".join(f"{lo:#x}-{min(hi, lo + 64 * PAGE):#x}" for lo, hi in maps[::3])
    d2 = str(tmp_path / "delta")
    run("__debug", "img-write", "--to", d2, "--from-pid", pid, "--parent", d, "--dirty", dirty)
    js = run_json("img", "show", d2)
    assert js["parent_pages"] > 0 and js["depth"] == 1
    assert verify(d2)[0] == 0
    assert read_object(d2, TASK, pid) == expected_bytes(truth)
    out = tmp_path / "criu"
    run("img", "flatten", d2, "--to", out)
    assert read_criu_pagemap(str(out), f"pagemap-{pid}.img") == truth


# ---------------------------------------------------------------- golden fixtures

def golden_state():
    """What the fixtures under test/fixtures hold (generated once by
    test/fixtures/make_img_fixtures.py from this same description)."""
    base = {}
    for p in range(16, 24):
        base[p] = bytes([(p * 7 + i) & 0xFF for i in range(16)]) * (PAGE // 16)
    base[24] = bytes(PAGE)
    base[25] = b"\xa5" * PAGE
    delta = dict(base)
    delta[17] = b"uffdwp golden delta page 17\n".ljust(PAGE, b"-")
    del delta[25]
    delta[26] = bytes(PAGE)
    shm = {0: b"shared memory object 9\n".ljust(PAGE, b"\x00")}
    return ({(TASK, 1000): base, (SHMEM, 9): shm}, {(TASK, 1000): delta, (SHMEM, 9): shm})


@pytest.fixture(params=["img-v1", "img-v2"])
def golden(tmp_path, request):
    """Every index version ever written must stay readable."""
    src = os.path.join(FIXTURES, request.param)
    if not os.path.isdir(src):
        pytest.fail(f"test/fixtures/{request.param} is missing")
    dst = tmp_path / request.param
    shutil.copytree(src, dst, symlinks=True)
    return dst


def test_golden_fixtures(golden):
    base_state, delta_state = golden_state()
    assert verify(str(golden / "base"))[0] == 0
    assert verify(str(golden / "delta"))[0] == 0
    check_chain(str(golden / "base"), base_state)
    check_chain(str(golden / "delta"), delta_state)
    js = run_json("img", "show", str(golden / "delta"))
    assert js["depth"] == 1 and js["frame_size"] == 65536
    assert js["version"] == int(golden.name[len("img-v"):])
    # Version 1 recorded the CRC residue, the same for every index: nothing to check.
    base = run_json("img", "show", str(golden / "base"))
    assert js["parent_crc"] == (None if js["version"] == 1 else base["index_crc"])
    assert [o["kind"] for o in js["objects"]] == ["task", "shmem"]
    sizes = sum(os.path.getsize(os.path.join(dp, f))
                for dp, _, fs in os.walk(golden) for f in fs)
    assert sizes < 8192


def test_new_delta_of_a_version_1_parent(golden, tmp_path):
    """A delta written now against an old parent records that parent's stored CRC."""
    if golden.name != "img-v1":
        pytest.skip("only the version 1 fixture is an old parent")
    base_state, _ = golden_state()
    d = write_image(str(tmp_path), "new", base_state, {}, parent=str(golden / "base"))
    js = run_json("img", "show", d)
    assert js["version"] == 2
    assert js["parent_crc"] == run_json("img", "show", str(golden / "base"))["index_crc"]
    check_chain(d, base_state)


def test_write_driver_help_is_honest():
    p = run("__debug", "img-write", "--help")
    assert b"test driver" in p.stdout and b"not a snapshot tool" in p.stdout
    # Not among the user's img commands.
    assert b"\n  write " not in run("img", "--help").stdout
    p = run("img", "write", "--to", "x", check=False)
    assert p.returncode == 2 and b"unknown img command 'write'" in p.stderr
