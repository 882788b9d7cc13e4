"""DVC's own functional tests pass with the plugin on exactly as natively (issue 17).

Runs a slice of DVC's `tests/func` (suite.SLICE) from the source distribution
of the DVC version under test, twice and side by side (each with 2 xdist
workers): natively (plugin installed, no image) and with `docker.image` at
DVC's system level for every repository the tests open. Fails on any test that passes natively and fails with containers,
unless known_differences.txt lists it with a reason. Slow (minutes): select
or deselect it with `-m dvc_suite`.

Time: the two runs go side by side (2 xdist workers each). DVC's own test
bodies (git, experiments, queue workers) take most of it in both runs, not
the containers. Measured on the 2-core machine shared with other test runs
(load 7-13): one after the other 328 s + 419 s = 747 s, side by side 526 s,
the container run alone with the native outcomes kept 474 s (load 10-14);
quiet, one after the other took 168 s + 220 s.
The native outcomes of a run without failures are kept next to the sources
(suite.native_cache_file: keyed by DVC version, slice, Python and the venv's
packages); a later run on the same machine runs only the container half.
`DVC_SUITE_FRESH=1` runs both. CI starts on a fresh machine: it runs both.
"""

from __future__ import annotations

import importlib.util
import os
import time

import pytest

from tests.dvc_suite import suite

pytestmark = [pytest.mark.dvc_suite, pytest.mark.docker, pytest.mark.slow]


def _need_test_deps() -> None:
    missing = [m for m in ("pytest_mock", "pytest_timeout", "xdist", "filelock", "pytest_cov")
               if importlib.util.find_spec(m) is None]
    if missing:
        from tests.conftest import _unavailable

        _unavailable(f"DVC's test dependencies are missing ({', '.join(missing)}): pip install -e '.[tests]'")


def test_dvc_functional_slice_passes_in_containers_as_natively(python_dvc_image, tmp_path):
    # the image: the tests' stages run `python copy.py`, and some `python` scripts that import dvc
    import dvc

    _need_test_deps()
    sources = suite.dvc_sources(dvc.__version__)
    reports = {}
    cached = suite.cached_native(dvc.__version__)
    if cached is not None:
        reports["native"] = cached
    start = time.monotonic()
    # side by side: while the container run waits for the daemon, the native run has the CPU
    runs = {name: suite.start_slice(sources, tmp_path / f"{name}.xml", tmp_path / name, image)
            for name, image in (("native", None), ("containers", python_dvc_image)) if name not in reports}
    took = {}
    try:
        while len(took) < len(runs):
            for name, proc in runs.items():
                if name not in took and proc.poll() is not None:
                    took[name] = time.monotonic() - start
            time.sleep(0.5)
    finally:
        for proc in runs.values():  # an interrupted wait leaves no run behind
            suite.stop_slice(proc)
    for name, proc in runs.items():
        junit = tmp_path / f"{name}.xml"
        log = suite.log_of(junit).read_text(errors="replace")
        assert junit.exists(), f"{name} run wrote no report (exit {proc.returncode}):\n{log[-6000:]}"
        reports[name] = suite.outcomes(junit)
    native, containers = reports["native"], reports["containers"]
    if cached is None:
        suite.remember_native(dvc.__version__, native)
    native_took = f"kept from an earlier run: {suite.native_cache_file(dvc.__version__)}" if cached is not None \
        else f"done after {took['native']:.0f} s"
    summary = (
        f"DVC {dvc.__version__}: native {suite.counts(native)} ({native_took}); "
        f"containers {suite.counts(containers)} (done after {took['containers']:.0f} s"
        f"{'; the two side by side' if len(runs) > 1 else ''})"
    )
    print(summary)
    # the whole slice really ran (DVC_SUITE_SLICE narrows it on purpose)
    assert sum(o == suite.PASSED for o in native.values()) > (0 if os.environ.get("DVC_SUITE_SLICE") else 100), summary
    regressions, stale = suite.compare(native, containers, suite.read_known())
    if stale:
        print("known_differences.txt lists tests that no longer differ:", *stale, sep="\n  ")
    assert not regressions, f"{summary}\npass natively, fail with containers:\n  " + "\n  ".join(regressions)
