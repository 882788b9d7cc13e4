#!/usr/bin/env bash
# Run the test suite on this machine, from nothing: starts a Docker Engine if
# none answers, builds the offline test images, makes the venv, runs pytest.
#
# With no arguments, the whole suite in one pytest-xdist run (the README's test command):
#   python -m pytest -n $DDE_TEST_WORKERS --dist loadfile --no-loadscope-reorder
# Why workers: a test mostly waits on dvc start-ups and containers, so
# pytest-xdist overlaps them. Why loadfile (tests/conftest.py, "Scheduling"): a
# module's tests stay on one worker, and the Swarm modules are one unit that
# starts the session's 3-node swarm once; they mostly wait on the swarm, so a
# third worker runs them beside the two busy ones.
# With arguments, one `python -m pytest ARGS` (serial unless ARGS has -n),
# e.g. `scripts/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-docker.sh
scripts/build-images.sh
VENV=$(scripts/venv.sh)
WORKERS=${DDE_TEST_WORKERS:-3}

run_pytest() {
    local rc=0
    "$VENV/bin/python" -m pytest "$@" || rc=$?
    # pytest exits 5 when it collected no test: that proves nothing, so it is a failure
    [ "$rc" -eq 5 ] && echo "test: pytest collected no tests" >&2 && rc=1
    return "$rc"
}

if [ "$#" -gt 0 ]; then
    run_pytest "$@"
    exit
fi
run_pytest -n "$WORKERS" --dist loadfile --no-loadscope-reorder
