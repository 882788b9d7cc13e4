"""DVC's own functional tests pass with the plugin on exactly as natively (issue 17).

Runs a slice of DVC's `tests/func` (suite.SLICE) from the source distribution
of the DVC version under test, twice: natively (plugin installed, no image)
and with `docker.image` at DVC's system level for every repository the tests
open. Fails on any test that passes natively and fails with containers,
unless known_differences.txt lists it with a reason. Slow (minutes): select
or deselect it with `-m dvc_suite`.
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
    took = {}
    for name, image in (("native", None), ("containers", python_dvc_image)):
        junit = tmp_path / f"{name}.xml"
        start = time.monotonic()
        proc = suite.run_slice(sources, junit, tmp_path / name, image)
        took[name] = time.monotonic() - start
        assert junit.exists(), f"{name} run wrote no report (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        reports[name] = suite.outcomes(junit)
    native, containers = reports["native"], reports["containers"]
    summary = (
        f"DVC {dvc.__version__}: native {suite.counts(native)} ({took['native']:.0f} s); "
        f"containers {suite.counts(containers)} ({took['containers']:.0f} s)"
    )
    print(summary)
    # the whole slice really ran (DVC_SUITE_SLICE narrows it on purpose)
    assert sum(o == suite.PASSED for o in native.values()) > (0 if os.environ.get("DVC_SUITE_SLICE") else 100), summary
    regressions, stale = suite.compare(native, containers, suite.read_known())
    if stale:
        print("known_differences.txt lists tests that no longer differ:", *stale, sep="\n  ")
    assert not regressions, f"{summary}\npass natively, fail with containers:\n  " + "\n  ".join(regressions)
