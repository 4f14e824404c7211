"""Packaging: the sdist carries everything dataplane/_build.py compiles, and a wheel built
from that sdist (not from the tree) compiles the data plane and loads.

The tree is copied first (the files git tracks or would track), so what the sdist holds
comes from pyproject.toml's package data, not from build products lying in the worktree.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (f"{' '.join(args)} failed in {cwd} (exit {proc.returncode}):\n"
                                  f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def _copy_tree(dest: Path) -> None:
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                  REPO).stdout
    for rel in filter(None, listed.split("\0")):
        src = REPO / rel
        if src.is_file():  # a file deleted in the worktree is still listed as cached
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes(src.read_bytes())


def _build_inputs(root: Path) -> set[str]:
    """What _build.py needs besides the Python packages: every C file and header."""
    dp = root / "dataplane"
    files = [*dp.glob("include/*.h"), *dp.glob("src/*/*.c"), *dp.glob("src/*/*.h"),
             *dp.glob("*.py"), root / "setup.py", root / "pyproject.toml"]
    return {str(f.relative_to(root)) for f in files}


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    _copy_tree(tree)
    out = tmp_path_factory.mktemp("sdist")
    _run([PYTHON, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out)], tree)
    (archive,) = out.glob("smartswitch-*.tar.gz")
    return archive


def test_sdist_holds_every_build_input(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    inside = {n.split("/", 1)[1] for n in names if "/" in n}
    missing = sorted(_build_inputs(REPO) - inside)
    assert not missing, f"{sdist.name} lacks files dataplane/_build.py needs: {missing}"


def test_wheel_built_from_the_sdist_compiles_and_loads(sdist: Path, tmp_path: Path) -> None:
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    (source,) = (tmp_path / "unpacked").iterdir()
    wheels = tmp_path / "wheels"
    _run([PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels),
          str(source)], tmp_path)
    (wheel,) = wheels.glob("smartswitch-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        assert [n for n in names if n.startswith("dataplane/_fastpath") and n.endswith(".so")], \
            f"{wheel.name} has no compiled dataplane/_fastpath*.so: {sorted(names)}"
        whl.extractall(tmp_path / "installed")
    # The installed layout: the module's ABI stamp matches the headers shipped beside it.
    probe = ("import dataplane, dataplane.fastpath as fp; ffi, lib = fp.load(); "
             "print(dataplane.__file__, lib.ss_abi_version() == fp.EXPECTED_ABI_VERSION)")
    out = subprocess.run([PYTHON, "-I", "-c", f"import sys; sys.path.insert(0, "
                          f"{str(tmp_path / 'installed')!r}); {probe}"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    where, same = out.stdout.split()
    assert where.startswith(str(tmp_path / "installed")) and same == "True", out.stdout
