# SPDX-License-Identifier: GPL-2.0
"""Shared pieces of the image tests: the command, a ground-truth model of a
chain, spec files for the `__debug img-write` test driver, a CRC32C and a reader of
CRIU page images written from what CRIU's source says about them."""
import os
import struct
import subprocess

BUILD = os.environ.get("UFFDWP_BUILD",
                       os.path.join(os.path.dirname(__file__), "..", "build"))
UFFDWP = os.path.join(BUILD, "uffdwp")
PAGE = 4096
TASK, SHMEM = 1, 2
INDEX = "uffdwp-index.img"
PAGES = "uffdwp-pages.zst"


def run(*args, check=True, timeout=120):
    """Run uffdwp; returns the CompletedProcess (bytes)."""
    p = subprocess.run([UFFDWP] + [str(a) for a in args], capture_output=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"uffdwp {args} exited {p.returncode}: "
                             f"{p.stderr.decode(errors='replace')}")
    return p


def run_json(*args):
    import json
    return json.loads(run("--json", *args).stdout)


def verify(d):
    """(exit code, stderr text) of `img verify d`."""
    p = run("img", "verify", d, check=False)
    return p.returncode, p.stderr.decode(errors="replace")


# ---------------------------------------------------------------- CRC32C

def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        t.append(c)
    return t


_CRC = _crc_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _CRC[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def reseal_index(path):
    """Recompute the CRC of an index after a deliberate edit."""
    with open(path, "r+b") as f:
        b = bytearray(f.read())
        end = len(b) - 8
        b[end:end + 4] = struct.pack("<I", crc32c(bytes(b[:end])))
        f.seek(0)
        f.write(b)


def reseal_seek_table(path):
    with open(path, "r+b") as f:
        b = bytearray(f.read())
        n = struct.unpack_from("<I", b, len(b) - 16)[0]
        tsize = 8 + 12 * n + 16
        start = len(b) - tsize
        b[len(b) - 8:len(b) - 4] = struct.pack("<I", crc32c(bytes(b[start:len(b) - 8])))
        f.seek(0)
        f.write(b)


# ---------------------------------------------------------------- page content

def page_random(rng):
    return rng.randbytes(PAGE)


def page_text(rng):
    """Compressible, like heap pages of a real program."""
    words = [b"object", b"None", b"0x7f3a", b"dict", b"str", b"int", b"\x00\x00\x00"]
    out = bytearray()
    while len(out) < PAGE:
        out += rng.choice(words) + bytes([rng.randrange(256)])
    return bytes(out[:PAGE])


def page_fill(rng):
    return bytes([rng.choice([0, 0, 0, 0xFF, rng.randrange(256)])]) * PAGE


def page_any(rng):
    r = rng.random()
    if r < 0.3:
        return page_random(rng)
    if r < 0.8:
        return page_text(rng)
    return page_fill(rng)


# ---------------------------------------------------------------- model + specs

class Model:
    """Ground truth of a chain: {(kind, id): {page number: bytes}}."""

    def __init__(self):
        self.objs = {}

    def copy(self):
        m = Model()
        m.objs = {k: dict(v) for k, v in self.objs.items()}
        return m


def write_image(tmp, name, state, changed, parent=None, opts=(), check=True):
    """Write one image of `state` ({obj: {page: bytes}}) into tmp/name.

    changed: {obj: set of pages stored here}; every other page is marked in
    parent. Returns the directory (or the CompletedProcess if check=False).
    """
    d = os.path.join(tmp, name)
    data_file = os.path.join(tmp, name + ".data")
    spec = os.path.join(tmp, name + ".spec")
    off = 0
    lines = []
    with open(data_file, "wb") as df:
        for (kind, oid), pages in sorted(state.items()):
            lines.append(f"{'task' if kind == TASK else 'shmem'} {oid}")
            keys = sorted(pages)
            i = 0
            while i < len(keys):
                p = keys[i]
                stored = p in changed.get((kind, oid), ())
                j = i + 1
                while (j < len(keys) and keys[j] == keys[j - 1] + 1 and
                       (keys[j] in changed.get((kind, oid), ())) == stored):
                    j += 1
                if stored:
                    for k in keys[i:j]:
                        df.write(pages[k])
                    lines.append(f"data {p * PAGE:#x} {j - i} {data_file} {off}")
                    off += (j - i) * PAGE
                else:
                    lines.append(f"parent {p * PAGE:#x} {j - i}")
                i = j
    with open(spec, "w") as f:
        f.write("\n".join(lines) + "\n")
    args = ["__debug", "img-write", "--to", d, "--spec", spec] + list(opts)
    if parent:
        args += ["--parent", parent]
    p = run(*args, check=check)
    os.unlink(data_file)
    return d if check else p


def random_chain(tmp, rng, length, objs=((TASK, 100), (TASK, 200), (SHMEM, 7)),
                 opts=()):
    """A chain of `length` images with overlapping deltas; returns (dirs, states)."""
    state = {}
    for o in objs:
        pages = {}
        base = rng.randrange(1, 1 << 20) * 16 if o[0] == TASK else 0
        for region in range(rng.randrange(1, 4)):
            start = base + region * 4096 + rng.randrange(64)
            for p in range(start, start + rng.randrange(1, 200)):
                pages[p] = page_any(rng)
        state[o] = pages
    dirs, states = [], []
    changed = {o: set(p) for o, p in state.items()}
    for i in range(length):
        if i:
            state = {o: dict(p) for o, p in state.items()}
            changed = {}
            for o, pages in state.items():
                ch = set()
                keys = sorted(pages)
                for p in keys:
                    r = rng.random()
                    if r < 0.15:
                        pages[p] = page_any(rng)
                        ch.add(p)
                    elif r < 0.18:
                        del pages[p]
                # Grow a little: new pages are always stored.
                if keys and rng.random() < 0.5:
                    top = max(keys) + rng.randrange(1, 8)
                    for p in range(top, top + rng.randrange(1, 20)):
                        pages[p] = page_any(rng)
                        ch.add(p)
                changed[o] = ch
        d = write_image(tmp, f"img{i}", state, changed,
                        parent=dirs[-1] if dirs else None, opts=opts)
        dirs.append(d)
        states.append(state)
    return dirs, states


def read_object(d, kind, oid):
    flag = "--task" if kind == TASK else "--shmem"
    return run("img", "read", d, flag, oid).stdout


def expected_bytes(pages):
    return b"".join(pages[p] for p in sorted(pages))


def layout(d):
    """{obj: set of pages} the newest image of d lists."""
    js = run_json("img", "show", d)
    out = {}
    for o in js["objects"]:
        k = (TASK if o["kind"] == "task" else SHMEM, o["id"])
        s = set()
        for r in o["ranges"]:
            s.update(range(r["start"] // PAGE, r["start"] // PAGE + r["pages"]))
        out[k] = s
    return out


def check_chain(d, state):
    assert layout(d) == {o: set(p) for o, p in state.items()}
    for (kind, oid), pages in state.items():
        assert read_object(d, kind, oid) == expected_bytes(pages), (d, kind, oid)


# ---------------------------------------------------------------- CRIU images

CRIU_IMG_COMMON_MAGIC = 0x54564319
CRIU_IMG_SERVICE_MAGIC = 0x55105940  # stats, inventory and the like
CRIU_PAGEMAP_MAGIC = 0x56084025
CRIU_PE_PARENT, CRIU_PE_LAZY, CRIU_PE_PRESENT = 1, 2, 4


def _varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def pb_fields(b):
    """A protobuf message as {field number: [values]} (varints and bytes)."""
    out, i = {}, 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        out.setdefault(num, []).append(v)
    return out


def criu_img_records(path, magic=None):
    """The protobuf records of a CRIU image, after its two magic words
    (checked when @magic is given), each as pb_fields() decodes it. The
    tests and scripts/bench-* read CRIU's images with it."""
    with open(path, "rb") as f:
        b = f.read()
    m1, m2 = struct.unpack_from("<II", b, 0)
    if magic is not None:
        assert m1 in (CRIU_IMG_COMMON_MAGIC, CRIU_IMG_SERVICE_MAGIC) and m2 == magic, \
            f"{path}: magic {m1:x} {m2:x}, want {magic:x}"
    i, recs = 8, []
    while i < len(b):
        n = struct.unpack_from("<I", b, i)[0]
        recs.append(pb_fields(b[i + 4:i + 4 + n]))
        i += 4 + n
    assert i == len(b), f"{path}: a record runs past the end"
    return recs


def criu_pagemap_entries(dirname, name):
    """One CRIU pagemap image and its pages: (entries, page data), each
    entry (vaddr, nr_pages, flags, offset of its data). nr_pages is field 5
    or, in older images, compat_nr_pages (2); an entry without flags is
    present, or in the parent (in_parent)."""
    recs = criu_img_records(os.path.join(dirname, name), CRIU_PAGEMAP_MAGIC)
    with open(os.path.join(dirname, f"pages-{recs[0][1][0]}.img"), "rb") as f:
        data = f.read()
    entries, off = [], 0
    for e in recs[1:]:
        vaddr, nr = e[1][0], e[5][0] if 5 in e else e[2][0]
        flags = e[4][0] if 4 in e else CRIU_PE_PARENT if e.get(3, [0])[0] else CRIU_PE_PRESENT
        entries.append((vaddr, nr, flags, off))
        if flags & CRIU_PE_PRESENT:
            off += nr * PAGE
    assert off == len(data), f"{dirname}/{name}: pagemap and pages differ in size"
    return entries, data


def read_criu_pagemap(dirname, name):
    """Pages of one CRIU pagemap image with present pages only:
    {page number: bytes}."""
    entries, data = criu_pagemap_entries(dirname, name)
    out, last = {}, -1
    for vaddr, nr, flags, off in entries:
        assert flags == CRIU_PE_PRESENT, f"entry at {vaddr:x}: flags {flags}, not present only"
        assert vaddr > last, "entries out of order"
        last = vaddr
        for k in range(nr):
            out[vaddr // PAGE + k] = data[off + k * PAGE:off + (k + 1) * PAGE]
    return out
