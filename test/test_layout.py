# SPDX-License-Identifier: GPL-2.0
"""The README's Layout section and the docs it links name what exists."""
import glob
import os
import re

TOP = os.path.join(os.path.dirname(__file__), "..")


def _readme():
    with open(os.path.join(TOP, "README.md")) as f:
        return f.read()


def test_layout_paths_exist():
    text = _readme()
    layout = text[text.index("## Layout"):]
    paths = re.findall(r"`([A-Za-z0-9_./-]+/[A-Za-z0-9_./-]*|[A-Za-z0-9_-]+\.[a-z]{1,3})`", layout)
    assert paths, "no paths in the Layout section"
    # A room's files are named within its bullet, the room within plugin/lib/.
    bases = ["plugin/cli", "criu-patches", "images", "plugin/lib"] + \
        [os.path.relpath(d, TOP) for d in glob.glob(os.path.join(TOP, "plugin/lib/*/"))]
    missing = []
    for p in paths:
        candidates = [p] + [os.path.join(d, p) for d in bases]
        if not any(os.path.exists(os.path.join(TOP, c)) for c in candidates):
            missing.append(p)
    assert not missing, f"README's Layout names what does not exist: {missing}"


def test_readme_links_exist():
    for link in re.findall(r"\]\(([^)#:]+)\)", _readme()):
        assert os.path.exists(os.path.join(TOP, link)), f"README links {link}, which is missing"


def test_readme_size():
    assert len(_readme().encode()) < 15 * 1024, "the README is for users: keep it under 15 KB"


def test_make_help_names_real_targets():
    """`make help` lists targets the Makefile has, and every user-facing one of them."""
    import subprocess
    out = subprocess.run(["make", "-s", "-C", TOP, "help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    named = set(re.findall(r"^make ([a-z-]+)", out, re.M))
    with open(os.path.join(TOP, "Makefile")) as f:
        targets = set(re.findall(r"^([a-z][a-z-]*):", f.read(), re.M))
    assert named and named <= targets, f"make help names no such target: {named - targets}"
    for t in ("setup", "demo", "test", "criu", "zdtm", "lint", "bench", "install", "clean"):
        assert t in named, f"make help leaves out {t}"
