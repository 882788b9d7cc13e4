"""Wheels carry dvc_docker_exec.pth at their root, and the installed .pth runs.

The project is copied to tmp_path first, so builds leave nothing in the work
tree. Builds run without isolation (no index needed), so they need
setuptools >= 64 and a bdist_wheel (the ``wheel`` package, or setuptools >= 70.1)
in the test's Python: the ``tests`` extra declares both. Without them these
tests skip on a laptop and fail under CI=true (``build_tools``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import List

import pytest

from tests.conftest import ROOT, _unavailable

PTH = "dvc_docker_exec.pth"
PROJECT_FILES = ("setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md", PTH, "dvc_docker_exec_hook.py")


def _can_build() -> str:
    """Empty if wheels can be built here without isolation, else why not."""
    try:
        import setuptools
    except ImportError:
        return "setuptools is not installed"
    if int(setuptools.__version__.split(".")[0]) < 64:
        return f"setuptools {setuptools.__version__} < 64 has no PEP 660 editable wheels"
    if importlib.util.find_spec("wheel") is None and importlib.util.find_spec("setuptools.command.bdist_wheel") is None:
        return "no bdist_wheel: install `wheel` (or setuptools >= 70.1)"
    return ""


@pytest.fixture(scope="module")
def build_tools() -> None:
    missing = _can_build()
    if missing:
        _unavailable(f"cannot build wheels here: {missing} (pip install -e .[tests])")


def run(args: List[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project's build inputs."""
    dst = tmp_path_factory.mktemp("project")
    for name in PROJECT_FILES:
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dst / name)
    shutil.copytree(ROOT / "dvc_docker_exec", dst / "dvc_docker_exec", ignore=shutil.ignore_patterns("__pycache__"))
    return dst


@pytest.fixture(scope="module")
def wheel(build_tools: None, project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out), str(project)],
        cwd=out,
    )
    (built,) = out.glob("dvc_docker_exec-*.whl")
    return built


def record(whl: zipfile.ZipFile) -> List[str]:
    (name,) = [n for n in whl.namelist() if n.endswith(".dist-info/RECORD")]
    return [line.split(",")[0] for line in whl.read(name).decode().splitlines()]


def test_wheel_has_the_pth_at_its_root(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        assert PTH in whl.namelist()
        assert whl.read(PTH) == (ROOT / PTH).read_bytes()
        assert PTH in record(whl)  # so `pip uninstall` removes it
        assert "dvc_docker_exec_hook.py" in whl.namelist()


def test_wheel_has_every_module(wheel: Path) -> None:
    """The published form (a wheel, until it is on the index: README "Install") carries every module of the source, sub-packages included."""
    source = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "dvc_docker_exec").rglob("*.py"))
    assert "dvc_docker_exec/backends/runner.py" in source  # the sub-packages are seen
    with zipfile.ZipFile(wheel) as whl:
        assert [n for n in source if n not in whl.namelist()] == []
        metadata = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        text = whl.read(metadata).decode()
    assert "Requires-Dist: dvc>=3.50" in text and "Requires-Dist: docker" in text


def test_editable_wheel_has_the_pth(build_tools: None, project: Path, tmp_path: Path) -> None:
    code = "import sys, setuptools.build_meta as b; print(b.build_editable(sys.argv[1]))"
    proc = run([sys.executable, "-c", code, str(tmp_path)], cwd=project)
    built = tmp_path / proc.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(built) as whl:
        names = whl.namelist()
        assert PTH in names and PTH in record(whl)
        assert whl.read(PTH) == (ROOT / PTH).read_bytes()
        # setuptools' own .pth that makes the source importable is still there
        assert any(n.startswith("__editable__") and n.endswith(".pth") for n in names), names
        assert "dvc_docker_exec_hook.py" not in names  # editable: the source stays in the tree


def test_installed_pth_installs_the_hook(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)], cwd=tmp_path)
    assert (target / PTH).is_file()
    # -S: no site-packages of this venv (whose own .pth would install the hook too); -I: no PYTHONPATH
    code = (
        "import site, sys; site.addsitedir(sys.argv[1]); "
        "import dvc_docker_exec_hook as h; "
        "print(any(type(f).__name__ == '_Finder' for f in sys.meta_path), h.__file__.startswith(sys.argv[1]), "
        "'dvc' in sys.modules or 'dvc_docker_exec' in sys.modules)"
    )
    proc = run([sys.executable, "-I", "-S", "-c", code, str(target)], cwd=tmp_path)
    assert proc.stdout.split() == ["True", "True", "False"]
    assert proc.stderr == ""


def test_pth_without_the_package_is_harmless(tmp_path: Path) -> None:
    """An uninstall that left only the .pth behind must not break Python."""
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    shutil.copy2(ROOT / PTH, site_dir / PTH)
    code = "import site, sys; site.addsitedir(sys.argv[1]); print(any(type(f).__name__ == '_Finder' for f in sys.meta_path))"
    proc = run([sys.executable, "-I", "-S", "-c", code, str(site_dir)], cwd=tmp_path)
    assert proc.stdout.split() == ["False"]
    assert proc.stderr == ""

