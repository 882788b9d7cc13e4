#!/usr/bin/env bash
# Run the test suite on this machine, from nothing: starts a Docker Engine if
# none answers, builds the offline test images, makes the venv, runs pytest.
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-docker.sh
scripts/build-images.sh
VENV=$(scripts/venv.sh)
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when it collected no test: that proves nothing, so it is a failure
[ "$rc" -eq 5 ] && echo "test: pytest collected no tests" >&2 && rc=1
exit "$rc"
