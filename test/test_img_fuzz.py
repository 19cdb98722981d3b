# SPDX-License-Identifier: GPL-2.0
"""The libFuzzer target for the image readers, for a bounded time
(UFFDWP_FUZZ_SECONDS, default 30). Longer runs by hand:
    make -C test/fuzz BUILD=$PWD/build
    build/fuzz/fuzz_img -max_total_time=3600 build/fuzz/corpus
"""
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from img_helpers import BUILD, INDEX, PAGES, TASK, SHMEM, page_any, write_image  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SECONDS = int(os.environ.get("UFFDWP_FUZZ_SECONDS", "30"))


def libfuzzer_missing():
    if not shutil.which("clang"):
        return "clang is not installed"
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "t.c")
        with open(src, "w") as f:
            f.write("int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)"
                    "{ return 0; }\n")
        p = subprocess.run(["clang", "-fsanitize=fuzzer,address", src, "-o",
                            os.path.join(tmp, "t")], capture_output=True, text=True)
        if p.returncode:
            return f"clang cannot link libFuzzer: {p.stderr.strip().splitlines()[-1]}"
    return None


def seed(d):
    idx = open(os.path.join(d, INDEX), "rb").read()
    pages = open(os.path.join(d, PAGES), "rb").read()
    return struct.pack("<I", len(idx)) + idx + pages


def test_fuzz_readers(tmp_path):
    why = libfuzzer_missing()
    if why:
        pytest.skip(why)
    p = subprocess.run(["make", "-C", os.path.join(HERE, "fuzz"),
                        f"BUILD={os.path.abspath(BUILD)}"], capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    fuzzer = os.path.join(BUILD, "fuzz", "fuzz_img")

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for version in ("img-v1", "img-v2"):
        fx = os.path.join(HERE, "fixtures", version)
        for name in ("base", "delta"):
            (corpus / f"fixture-{version}-{name}").write_bytes(seed(os.path.join(fx, name)))
    rng = random.Random(4)
    for i, opts in enumerate((["--frame-size", "4096"], ["--frame-size", "8192"])):
        pages = {p: page_any(rng) for p in range(8 + i, 14 + 2 * i)}
        d = write_image(str(tmp_path), f"s{i}", {(TASK, 3): pages, (SHMEM, 1): {0: pages[8 + i]}},
                        {(TASK, 3): set(pages), (SHMEM, 1): {0}}, opts=opts)
        (corpus / f"small-{i}").write_bytes(seed(d))
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, UFFDWP_FUZZ_DIR=str(work))
    p = subprocess.run([fuzzer, f"-max_total_time={SECONDS}", "-timeout=10",
                        "-rss_limit_mb=2048", "-max_len=65536", str(corpus)],
                       capture_output=True, text=True, timeout=SECONDS + 300, env=env,
                       cwd=str(tmp_path))
    tail = "\n".join(p.stderr.splitlines()[-30:])
    assert p.returncode == 0, f"the fuzzer found something:\n{tail}"
    done = [ln for ln in p.stderr.splitlines() if ln.startswith("Done ")]
    assert done, tail
    print(done[-1])
