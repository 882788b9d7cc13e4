"""The yardstick's comparison (tests/dvc_suite/suite.py), without running DVC's suite."""

from __future__ import annotations

import pytest

from tests.dvc_suite import suite

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.func.test_run" name="test_ok" />
<testcase classname="tests.func.repro.test_repro" name="test_p[a-b]"><failure message="x">x</failure></testcase>
<testcase classname="tests.func.test_stage.TestReload" name="test_x"><skipped message="s" /></testcase>
<testcase classname="tests.func.test_commit" name="test_e"><error message="e">e</error></testcase>
</testsuite></testsuites>"""


def test_outcomes_are_keyed_by_pytest_node_id(tmp_path):
    path = tmp_path / "r.xml"
    path.write_text(JUNIT)
    assert suite.outcomes(path) == {
        "tests/func/test_run.py::test_ok": "passed",
        "tests/func/repro/test_repro.py::test_p[a-b]": "failed",
        "tests/func/test_stage.py::TestReload::test_x": "skipped",
        "tests/func/test_commit.py::test_e": "failed",
    }


def test_compare_fails_only_what_passes_natively_and_is_not_listed():
    native = {"a": "passed", "b": "passed", "c": "failed", "d": "passed", "e": "passed"}
    containers = {"a": "passed", "b": "failed", "c": "failed", "d": "failed"}
    regressions, stale = suite.compare(native, containers, {"d": "compares dvc.lock text", "a": "was different"})
    assert regressions == ["b", "e"]  # e: not run with containers at all
    assert stale == ["a"]


def test_known_list_needs_a_reason(tmp_path):
    path = tmp_path / "k.txt"
    path.write_text("# comment\n\ntests/x.py::t  compares the exact text of dvc.lock\n")
    assert suite.read_known(path) == {"tests/x.py::t": "compares the exact text of dvc.lock"}
    path.write_text("tests/x.py::t\n")
    with pytest.raises(ValueError, match="no reason"):
        suite.read_known(path)
    assert isinstance(suite.read_known(), dict)  # the committed list parses


def test_sources_come_from_the_cache_without_the_network(tmp_path):
    root = tmp_path / "dvc-9.9.9"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "conftest.py").write_text("")
    assert suite.dvc_sources("9.9.9", cache=tmp_path) == root


def test_native_outcomes_are_kept_per_dvc_version_and_only_without_failures(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_SUITE_FRESH", raising=False)
    monkeypatch.delenv("DVC_SUITE_SLICE", raising=False)
    assert suite.cached_native("9.9.9", cache=tmp_path) is None
    assert not suite.remember_native("9.9.9", {"a": "passed", "b": "failed"}, cache=tmp_path)  # flaky? run again
    assert suite.cached_native("9.9.9", cache=tmp_path) is None
    assert suite.remember_native("9.9.9", {"a": "passed", "c": "skipped"}, cache=tmp_path)
    assert suite.cached_native("9.9.9", cache=tmp_path) == {"a": "passed", "c": "skipped"}
    assert suite.cached_native("9.9.8", cache=tmp_path) is None  # another DVC: another fact
    monkeypatch.setenv("DVC_SUITE_SLICE", "tests/func/test_run.py")
    assert suite.cached_native("9.9.9", cache=tmp_path) is None  # another slice
    monkeypatch.delenv("DVC_SUITE_SLICE")
    monkeypatch.setenv("DVC_SUITE_FRESH", "1")
    assert suite.cached_native("9.9.9", cache=tmp_path) is None
