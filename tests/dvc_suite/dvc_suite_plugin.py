"""pytest plugin for DVC's own test suite: every repository the tests open runs its stages in containers.

Loaded with ``-p dvc_suite_plugin`` into a run of DVC's ``tests/`` (no test
code changes). DVC's conftest points ``DVC_SYSTEM_CONFIG_DIR`` at a folder of
the session (its ``isolate`` fixture); we write a ``[docker]`` section into
the system-level config there, so it applies to every repository the tests
create, as a machine administrator's config would. The image comes from
``DVC_SUITE_IMAGE`` (it needs python, and DVC for the stages whose scripts import it:
the tests' stages run ``python copy.py`` and such).
"""

from __future__ import annotations

import os

import pytest

IMAGE_ENV = "DVC_SUITE_IMAGE"


@pytest.fixture(scope="session", autouse=True)
def _docker_system_config(isolate):  # noqa: ARG001 - DVC's fixture sets DVC_SYSTEM_CONFIG_DIR
    image = os.environ.get(IMAGE_ENV)
    if not image:
        yield
        return
    folder = os.environ["DVC_SYSTEM_CONFIG_DIR"]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config"), "a", encoding="utf-8") as fobj:
        fobj.write(f"[docker]\n    image = {image}\n")
    yield
