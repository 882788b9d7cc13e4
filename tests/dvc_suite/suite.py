"""DVC's own functional tests as a yardstick (issue 17): a slice of them, natively and in containers.

Fetches the source distribution of the DVC version under test (it ships
``tests/``) once into a cache folder, runs the slice twice, side by side, with pytest-xdist,
and compares the outcomes: every test that passes natively must pass with
``docker.image`` set at DVC's system level (``dvc_suite_plugin``), unless
``known_differences.txt`` lists it with a reason.

Pure helpers (no DVC import) so that the comparison is unit-testable.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
KNOWN = HERE / "known_differences.txt"
SLICE = (
    "tests/func/repro",
    "tests/func/test_run.py",
    "tests/func/test_stage.py",
    "tests/func/test_run_cache.py",
    "tests/func/experiments",
    "tests/func/metrics",
    "tests/func/params",
    "tests/func/plots",
    "tests/func/test_dvcfile.py",
    "tests/func/test_lockfile.py",
    "tests/func/test_commit.py",
    "tests/func/test_stage_load.py",
)
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


def cache_dir() -> Path:
    """Where sources are kept between runs (reruns are offline): $DVC_SUITE_CACHE or ~/.cache."""
    env = os.environ.get("DVC_SUITE_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dvc-docker-exec"
    return base / "dvc-suite"


def dvc_sources(version: str, cache: Optional[Path] = None) -> Path:
    """DVC's `tests/` (and pyproject.toml, its pytest config) of `version`, from the sdist on the package index.

    Only tests/ is unpacked: DVC's own package must come from the venv, where the plugin patches it.
    """
    cache = cache or cache_dir()
    root = cache / f"dvc-{version}"
    if (root / "tests" / "conftest.py").exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"dvc-{version}.tar.gz"
    if not sdist.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             f"dvc=={version}", "-d", str(cache)],
            check=True, capture_output=True, text=True,
        )
    staging = cache / f".dvc-{version}.{os.getpid()}"
    with tarfile.open(sdist) as tar:
        prefix = f"dvc-{version}/"
        wanted = [m for m in tar.getmembers() if m.name.startswith(prefix + "tests/") or m.name == prefix + "pyproject.toml"]
        for member in wanted:
            if member.issym() or member.islnk() or ".." in Path(member.name).parts:
                continue
            member.name = member.name[len(prefix):]
            tar.extract(member, staging)
    try:
        os.rename(staging, root)  # atomic: a concurrent run finds all of it or nothing
    except OSError:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)  # another run got there first
    return root


def start_slice(sources: Path, junit: Path, basetemp: Path, image: Optional[str], workers: int = 2,
                timeout: int = 300, extra: Sequence[str] = ()) -> "subprocess.Popen[bytes]":
    """Start one run of the slice; outcomes go to `junit`, its output to `junit` + `.log`.

    `image` None: native (the plugin installed, no image). Returns at once, so
    that the native and the container runs go side by side: the container
    run's workers mostly wait for the daemon, which leaves CPU to the native
    run. The run is a session of its own: `stop_slice` ends its xdist workers too.
    $DVC_SUITE_SLICE (paths under DVC's tests/, space-separated) runs less, while working on one part.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DVC_SUITE_IMAGE"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    # as in DVC's CI, the venv is active: queue workers start `dvc`, host stages `python` scripts importing dvc
    env["PATH"] = os.pathsep.join(filter(None, [os.path.dirname(sys.executable), env.get("PATH")]))
    if image:
        env["DVC_SUITE_IMAGE"] = image
    cmd = [
        sys.executable, "-m", "pytest", "-p", "dvc_suite_plugin", "-p", "no:cacheprovider", "-q", "--no-cov",
        "-n", str(workers), f"--timeout={timeout}", f"--basetemp={basetemp}", f"--junitxml={junit}",
        *extra, *(os.environ.get("DVC_SUITE_SLICE", "").split() or SLICE),
    ]
    with open(log_of(junit), "wb") as log:
        return subprocess.Popen(cmd, cwd=sources, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_slice(proc: "subprocess.Popen[bytes]") -> None:
    """End a run still going (the test failed or was interrupted), its workers with it."""
    if proc.poll() is None:
        import signal

        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def log_of(junit: Path) -> Path:
    return junit.with_name(junit.name + ".log")


def native_cache_file(version: str, cache: Optional[Path] = None) -> Path:
    """Where the native outcomes of `version` are kept, keyed by what decides them.

    Why a native result may be cached: the native run is a fact of the DVC
    version (its tests, the slice, Python and the venv's packages), not of
    this project's code, which only the container run exercises. The cache
    folder is the sources' (`cache_dir()`, under the home folder): a CI run on
    a fresh machine starts without it and runs both.
    """
    from importlib import metadata

    packages = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()
                      if d.metadata["Name"] and d.metadata["Name"].lower().replace("_", "-") != "dvc-docker-exec")
    slice_ = os.environ.get("DVC_SUITE_SLICE", "").split() or list(SLICE)
    key = json.dumps([version, list(sys.version_info[:2]), slice_, packages])
    return (cache or cache_dir()) / f"native-{version}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def cached_native(version: str, cache: Optional[Path] = None) -> Optional[Dict[str, str]]:
    """The native outcomes of an earlier run (None: none kept, or $DVC_SUITE_FRESH asks for a new run)."""
    path = native_cache_file(version, cache)
    if os.environ.get("DVC_SUITE_FRESH") or not path.exists():
        return None
    return dict(json.loads(path.read_text()))


def remember_native(version: str, found: Mapping[str, str], cache: Optional[Path] = None) -> bool:
    """Keep native outcomes for the next run; only a run with no failure (a flaky failure is not a fact)."""
    if not found or any(o == FAILED for o in found.values()):
        return False
    path = native_cache_file(version, cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(json.dumps(dict(found), sort_keys=True, indent=0))
    os.replace(staging, path)
    return True


def outcomes(junit: Path) -> Dict[str, str]:
    """test id (`tests/func/x.py::test_y[p]`) -> passed / failed / skipped, from a JUnit XML report."""
    found: Dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = (case.get("classname") or "").split(".")
        # classname is `tests.func.test_x` or `tests.func.test_x.TestClass`
        path_parts, klass = (module[:-1], module[-1]) if module and module[-1][:1].isupper() else (module, None)
        node = "/".join(path_parts) + ".py" + (f"::{klass}" if klass else "") + f"::{case.get('name')}"
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            found[node] = FAILED
        elif "skipped" in kinds:
            found[node] = SKIPPED
        else:
            found[node] = PASSED
    return found


def read_known(path: Path = KNOWN) -> Dict[str, str]:
    """test id -> reason, from `known_differences.txt` (`<test id>  <one-line reason>`, # comments)."""
    known: Dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        test, _, reason = line.partition(" ")
        if not reason.strip():
            raise ValueError(f"{path.name}: '{test}' has no reason")
        known[test] = reason.strip()
    return known


def compare(native: Mapping[str, str], containers: Mapping[str, str], known: Mapping[str, str]) -> Tuple[List[str], List[str]]:
    """(regressions: passed natively, not with containers and not listed; listed tests that pass with containers now)."""
    regressions = sorted(t for t, o in native.items() if o == PASSED and containers.get(t) != PASSED and t not in known)
    stale = sorted(t for t in known if containers.get(t) == PASSED or native.get(t) not in (PASSED, None))
    return regressions, stale


def counts(found: Mapping[str, str]) -> str:
    return ", ".join(f"{sum(o == kind for o in found.values())} {kind}" for kind in (PASSED, FAILED, SKIPPED))
