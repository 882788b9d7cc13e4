"""The import hook: installed by the .pth at start-up, cheap, patches DVC on import.

Start-up behaviour is checked in fresh interpreters of the test's own Python
(the venv where the project is installed), run from a temporary directory with
every PYTHON* variable cleared, so that neither the working tree nor the test
runner's sys.path is what gets imported: only what pip installed into
site-packages. Those tests need the installed .pth (`installed_pth`); without
it they skip on a laptop and fail under CI=true.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import List

import pytest

from dvc_docker_exec import dvc_glue
import dvc_docker_exec_hook as hook
from tests.conftest import ROOT, _unavailable

FINDER = "any(type(f).__name__ == '_Finder' for f in sys.meta_path)"


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "PYTHON"))}
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


# Where the installed distribution put its .pth, and which hook module a fresh interpreter imports.
PROBE = """
import importlib.metadata as md, json, site, sys
files = md.distribution("dvc-docker-exec").files or []
pth = [str(f.locate()) for f in files if f.name == "dvc_docker_exec.pth"]
import dvc_docker_exec_hook as hook
print(json.dumps({"pth": pth, "site": site.getsitepackages(), "hook": hook.__file__}))
"""


@pytest.fixture(scope="module")
def installed_pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dvc_docker_exec.pth that pip installed into this Python's site-packages."""
    cwd = tmp_path_factory.mktemp("hook-cwd")
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=clean_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        _unavailable(f"dvc-docker-exec is not installed in {sys.executable} (pip install -e .): {proc.stderr.strip()}")
    info = json.loads(proc.stdout)
    found = [Path(p) for p in info["pth"] if Path(p).is_file() and str(Path(p).parent) in info["site"]]
    if not found:
        _unavailable(f"dvc_docker_exec.pth is not installed in the site-packages of {sys.executable} (pip install -e .)")
    # the installed plugin is this checkout's (editable) or a copy of it, not another checkout's
    assert Path(info["hook"]).read_bytes() == (ROOT / "dvc_docker_exec_hook.py").read_bytes(), info["hook"]
    assert found[0].read_bytes() == (ROOT / "dvc_docker_exec.pth").read_bytes()
    return found[0]


def test_the_installed_pth_installs_the_finder(installed_pth: Path, tmp_path: Path) -> None:
    """No site processing, no hook; the installed site-packages alone installs it."""
    assert python("-S", "-c", f"import sys; print({FINDER})", cwd=tmp_path).stdout.split() == ["False"]
    code = f"import site, sys; site.addsitedir(sys.argv[1]); print({FINDER})"
    assert python("-S", "-c", code, str(installed_pth.parent), cwd=tmp_path).stdout.split() == ["True"]
    assert python("-c", f"import sys; print({FINDER})", cwd=tmp_path).stdout.split() == ["True"]


def test_startup_installs_only_the_finder(installed_pth: Path, tmp_path: Path) -> None:
    code = (
        "import sys; print('dvc' in sys.modules, 'docker' in sys.modules, "
        "any(type(f).__name__=='_Finder' for f in sys.meta_path), "
        "'voluptuous' in sys.modules, 'dvc_docker_exec.config' in sys.modules)"
    )
    assert python("-c", code, cwd=tmp_path).stdout.split() == ["False", "False", "True", "False", "False"]


PATCHED = """
import functools, sys
import dvc.stage.run
import dvc.config_schema
from dvc_docker_exec import dvc_glue
wrapper = dvc.stage.run.cmd_run
assert isinstance(wrapper, functools.partial), wrapper
assert wrapper.func is dvc_glue.cmd_run, wrapper.func
original = wrapper.args[0]
assert original.__module__ == "dvc.stage.run" and original.__name__ == "cmd_run"
assert wrapper.__wrapped__ is original and wrapper.__name__ == "cmd_run"
assert "docker" in dvc.config_schema.SCHEMA
assert dvc.stage.run._dvc_docker_exec_patched and dvc.config_schema._dvc_docker_exec_patched
from dvc.config import Config
Config.validate({"docker": {"image": "busybox"}})
try:
    Config.validate({"docker": {"memory": "lots"}})
except Exception as exc:
    assert "docker.memory" in str(exc), exc
else:
    raise AssertionError("not validated")
print("ok")
"""


def test_importing_dvc_patches_it(installed_pth: Path, tmp_path: Path) -> None:
    proc = python("-c", PATCHED, cwd=tmp_path)
    assert proc.stdout.strip() == "ok"
    assert "WARNING" not in proc.stderr


LATE = """
import sys
from dvc_docker_exec import hook, dvc_glue
# as if the hook came after DVC: no finder while dvc is imported
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "_Finder"]
import dvc.stage.run, dvc.config_schema
assert not hasattr(dvc.stage.run.cmd_run, "func"), "patched without the finder?"
assert "docker" not in dvc.config_schema.SCHEMA
from dvc.config import get_compiled_schema
get_compiled_schema()  # memoized before the section exists
hook.install()
hook.install()  # idempotent: one finder, no wrapper around the wrapper
assert sum(type(f).__name__ == "_Finder" for f in sys.meta_path) == 1
wrapper = dvc.stage.run.cmd_run
assert wrapper.func is dvc_glue.cmd_run and not hasattr(wrapper.args[0], "func")
assert "docker" in dvc.config_schema.SCHEMA
assert "docker" in get_compiled_schema().schema, "memoized schema not refreshed"
print("ok")
"""


def test_late_install_patches_loaded_modules_once(installed_pth: Path, tmp_path: Path) -> None:
    assert python("-c", LATE, cwd=tmp_path).stdout.strip() == "ok"


def test_python_m_dvc_works(installed_pth: Path, tmp_path: Path) -> None:
    proc = python("-m", "dvc", "--version", cwd=tmp_path)
    assert proc.stdout.strip()[0].isdigit()
    assert "WARNING" not in proc.stderr


def test_import_time_is_recorded(installed_pth: Path, tmp_path: Path, record_property) -> None:
    """Prints the hook's cumulative import time; no assertion on it (machines vary)."""
    proc = python("-X", "importtime", "-c", "pass", cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.rstrip().endswith("dvc_docker_exec_hook")]
    assert lines, proc.stderr
    cumulative_us = int(lines[0].split("|")[1])
    record_property("hook_import_us", cumulative_us)
    print(f"dvc_docker_exec_hook cumulative import time: {cumulative_us} us")
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert not {"dvc", "docker", "voluptuous"} & imported


# --- in-process: the finder and the loader ------------------------------------------------------


def test_finder_ignores_other_modules() -> None:
    assert hook._Finder().find_spec("json") is None
    assert hook._Finder().find_spec("dvc.stage") is None


def test_finder_wraps_the_target_loader() -> None:
    import dvc.stage

    spec = hook._Finder().find_spec("dvc.stage.run", dvc.stage.__path__)
    assert spec is not None
    assert isinstance(spec.loader, hook._PatchingLoader)
    # delegated attributes of the real loader
    assert spec.loader.get_filename("dvc.stage.run").endswith(os.path.join("dvc", "stage", "run.py"))


def test_finder_unknown_target_module_returns_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(hook._TARGETS, "no_such_module_xyz", "patch_stage_run")
    assert hook._Finder().find_spec("no_such_module_xyz") is None


def test_loader_patches_after_executing(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: List[str] = []

    class Loader:
        def create_module(self, spec):
            return None

        def exec_module(self, module):
            seen.append("exec")
            module.cmd_run = lambda *a, **k: None

    monkeypatch.setattr(dvc_glue, "patch_stage_run", lambda module: seen.append(f"patch {module.__name__}"))
    module = types.ModuleType("dvc.stage.run")
    hook._PatchingLoader(Loader(), "dvc.stage.run").exec_module(module)
    assert seen == ["exec", "patch dvc.stage.run"]


def test_loader_never_breaks_dvc(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    class Loader:
        def exec_module(self, module):
            module.ran = True

    def broken(module):
        raise RuntimeError("boom")

    monkeypatch.setattr(dvc_glue, "register_config_schema", broken)
    module = types.ModuleType("dvc.config_schema")
    hook._PatchingLoader(Loader(), "dvc.config_schema").exec_module(module)
    assert module.ran
    assert "WARNING: dvc-docker-exec could not patch dvc.config_schema: RuntimeError('boom')" in capsys.readouterr().err


def test_hook_module_is_stdlib_only() -> None:
    source = Path(hook.__file__).read_text()
    imports = [line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["sys"]
    assert importlib.util.find_spec("dvc_docker_exec_hook") is not None


def test_an_exception_logged_twice_shows_once() -> None:
    """Issue 20, item 5: exec-run's executor and DVC's main log the same exception; the filter keeps the first."""
    import io
    import logging

    from dvc_docker_exec.dvc_glue import _OncePerException

    out = io.StringIO()
    handler, other = logging.StreamHandler(out), logging.StreamHandler(out)
    once = _OncePerException()
    for h in (handler, other):
        h.addFilter(once)
    log = logging.getLogger("test-once")
    log.propagate = False
    log.handlers = [handler, other]
    try:
        raise ValueError("daemon down")
    except ValueError:
        log.exception("first")  # both handlers write it
        log.exception("again")  # the same exception: dropped by both
    try:
        raise ValueError("daemon down")
    except ValueError:
        log.exception("another exception with the same text")  # another object: shown
    log.error("no exception")
    text = out.getvalue()
    assert text.count("first") == 2 and "again" not in text
    assert text.count("another exception") == 2 and text.count("no exception") == 2
