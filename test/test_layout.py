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


def test_errors_doc_names_real_tests():
    """docs/errors.md says which test checks each failure: those tests exist."""
    with open(os.path.join(TOP, "docs/errors.md")) as f:
        named = set(re.findall(r"`(test_[a-z0-9_]+)`", f.read()))
    defined = set()
    for path in glob.glob(os.path.join(TOP, "test/test_*.py")):
        with open(path) as f:
            defined |= set(re.findall(r"^def (test_[a-z0-9_]+)", f.read(), re.M))
    assert len(named) > 40 and named <= defined, f"no such test: {sorted(named - defined)}"


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



def test_make_says_what_to_run_without_criu_headers():
    """Without a criu-plugin.h that has the hooks, make says to run make criu."""
    import subprocess
    p = subprocess.run(["make", "-n", "-s", "-C", TOP, "CRIU_INCLUDE=/nonexistent", "all"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "CRIU plugin not built" in p.stdout and "run 'make criu'" in p.stdout, p.stdout

def test_readme_commands_use_sudo_for_a_user(tmp_path):
    """As a user, the README's commands (make setup demo, make test) run what
    needs root through sudo: apt-get in install-deps.sh, the test suite and
    the demo (scripts/build-criu asks sudo for apt-get the same way, only
    for packages that are missing). The sudo here is a stand-in that
    records what it was asked to run and runs nothing; as root (everywhere
    else in this suite) the same commands run directly."""
    import shutil
    import subprocess
    import tempfile
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        import pytest
        pytest.skip("needs root and setpriv to become a user")
    work = tempfile.mkdtemp(prefix="uffdwp-sudo.")
    try:
        os.chmod(work, 0o755)
        log = os.path.join(work, "sudo.log")
        open(log, "w").close()
        os.chmod(log, 0o666)
        sudo = os.path.join(work, "sudo")
        with open(sudo, "w") as f:
            f.write(f'#!/bin/sh\necho "$*" >> {log}\n')
        os.chmod(sudo, 0o755)
        env = dict(os.environ, PATH=f"{work}:/usr/sbin:/usr/bin:/sbin:/bin", HOME=work)
        user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        top = os.path.abspath(TOP)

        p = subprocess.run(user + ["sh", os.path.join(top, "scripts", "install-deps.sh")],
                           capture_output=True, text=True, timeout=60, env=env)
        assert p.returncode == 0, p.stderr
        p = subprocess.run(user + [os.path.join(top, "scripts", "demo.sh")], cwd=top,
                           capture_output=True, text=True, timeout=60, env=env)
        assert p.returncode == 0, p.stderr
        with open(log) as f:
            asked = f.read().splitlines()
        apt = "env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600"
        assert asked[0].startswith(f"{apt} update"), asked
        assert asked[1].startswith(f"{apt} install -y"), asked
        assert asked[2].startswith("env BUILD=") and asked[2].endswith("scripts/demo.sh"), asked

        p = subprocess.run(user + ["make", "-n", "-s", "-C", top, "test", "demo"],
                           capture_output=True, text=True, timeout=60, env=env)
        assert p.returncode == 0, p.stderr
        rooted = [ln for ln in p.stdout.splitlines() if ln.startswith("sudo ")]
        assert any(" -m pytest " in ln for ln in rooted), p.stdout
        assert any(ln.endswith("scripts/demo.sh") for ln in rooted), p.stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)
