# SPDX-License-Identifier: GPL-2.0
"""The README's Layout section and the docs it links name what exists."""
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
    missing = []
    for p in paths:
        candidates = [p] + [os.path.join(d, p) for d in ("plugin/cli", "criu-patches", "images")]
        if not any(os.path.exists(os.path.join(TOP, c)) for c in candidates):
            missing.append(p)
    assert not missing, f"README's Layout names what does not exist: {missing}"


def test_readme_links_exist():
    for link in re.findall(r"\]\(([^)#:]+)\)", _readme()):
        assert os.path.exists(os.path.join(TOP, link)), f"README links {link}, which is missing"


def test_readme_size():
    assert len(_readme().encode()) < 15 * 1024, "the README is for users: keep it under 15 KB"
