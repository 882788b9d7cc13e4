#!/usr/bin/env bash
# Run the example pipeline (examples/pipeline) end to end, every stage in a
# Docker container, on a fresh machine and fully offline:
#
#   1. make sure a Docker Engine answers          (scripts/ensure-docker.sh)
#   2. build the offline base image if missing    (scripts/build-images.sh python)
#   3. make the project venv (dvc + this plugin)  (scripts/venv.sh)
#   4. copy the example into a new Git + DVC repo, `dvc config docker.build
#      Dockerfile` (the stage image is built by dvc from the example's Dockerfile
#      on that base, tagged $IMAGE), a host-built wheelhouse in its wheels/ so
#      the build is offline, `dvc repro`, `dvc metrics show`, one
#      `dvc exp run -S ...`, `dvc exp show`
#
# Usage: scripts/run-example.sh [DIR]
#   DIR: where to create the example repo (must not exist or be empty);
#        default: a new directory /tmp/dvc-docker-exec-example.XXXXXX
#
# Environment: DDE_EXAMPLE_IMAGE (default dvc-docker-exec-example:latest), the tag
# of the built stage image (FORCE=1 goes to build-images.sh and rebuilds the base
# image), DDE_CACHE (default
# ~/.cache/dvc-docker-exec) holds the example's wheelhouse.
# Exits non-zero on any failure; the last line is the example repo's path.
set -euo pipefail

PROG=run-example
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/scripts/lib.sh"
EXAMPLE=$HERE/examples/pipeline
IMAGE=${DDE_EXAMPLE_IMAGE:-dvc-docker-exec-example:latest}
BASE=dvc-docker-exec-test/python:bookworm  # what `scripts/build-images.sh python` builds
CACHE=${DDE_CACHE:-$HOME/.cache/dvc-docker-exec}
# Offline: no usage analytics from dvc.
export DVC_NO_ANALYTICS=1

die() { echo "$PROG: ERROR: $*" >&2; exit 1; }
step() { printf '\n==> %s\n' "$*"; }

SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo -n)

T0=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dde-example-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------ target dir ---
if [ -n "${1:-}" ]; then
    DIR=$1
    if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
        die "$DIR exists and is not empty"
    fi
    mkdir -p "$DIR"
else
    DIR=$(mktemp -d "${TMPDIR:-/tmp}/dvc-docker-exec-example.XXXXXX")
fi
DIR=$(cd "$DIR" && pwd)

# -------------------------------------------------------------- images ---
step "Docker engine and the offline base image $BASE"
"$HERE/scripts/ensure-docker.sh"
"$HERE/scripts/build-images.sh" python


# Wheels of requirements.txt for the image's python $1 in $2 (cached); 1 if no host python fits.
build_wheelhouse() {
    local pyver=$1 wheels=$2 py want
    want="python$pyver: $(sha256sum <"$EXAMPLE/requirements.txt" | cut -c1-64)"
    if [ -f "$wheels/.complete" ] && [ "$(cat "$wheels/.complete")" = "$want" ]; then
        echo "$PROG: wheelhouse $wheels is up to date"
        return 0
    fi
    if ! py=$(host_python "$pyver"); then
        # A Debian host whose python3 is the image's but lacks pip.
        if command -v apt-get >/dev/null 2>&1 &&
                [ "$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$pyver" ]; then
            echo "$PROG: installing python3-pip to build the wheelhouse"
            { "${SUDO[@]}" apt-get update -q &&
              "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
                  apt-get install -y -q --no-install-recommends python3-pip; } >"$WORK/apt.log" 2>&1 ||
                { tail -n 30 "$WORK/apt.log" >&2; die "apt-get install python3-pip failed"; }
        fi
        py=$(host_python "$pyver") || return 1
    fi
    echo "$PROG: building the wheelhouse for python$pyver with $py"
    rm -rf "$wheels" "$wheels.tmp"
    mkdir -p "$wheels.tmp"
    if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$py" -m pip wheel -q -w "$wheels.tmp" \
            -r "$EXAMPLE/requirements.txt" >"$WORK/wheels.log" 2>&1; then
        tail -n 30 "$WORK/wheels.log" >&2
        die "pip wheel -r $EXAMPLE/requirements.txt failed"
    fi
    echo "$want" >"$wheels.tmp/.complete"
    mv "$wheels.tmp" "$wheels"
}

# The Python of the base image, and wheels of requirements.txt for it in the example
# repo's wheels/ (git-ignored, in the build context): the image builds offline.
# Without a host python that fits, the build installs from PyPI.
prepare_wheels() {
    local pyver wheels
    pyver=$(docker run --rm --network none "$BASE" \
        python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])') || die "cannot run python3 in $BASE"
    wheels=$CACHE/example-wheels-py$pyver
    mkdir -p "$CACHE"
    exec 8>"$CACHE/.example.lock"  # one wheelhouse build at a time
    flock 8
    if build_wheelhouse "$pyver" "$wheels"; then
        cp -al "$wheels" "$DIR/wheels" 2>/dev/null || cp -a "$wheels" "$DIR/wheels"
        rm -f "$DIR/wheels/.complete"
    else
        echo "$PROG: no host python$pyver with pip: the image build installs from PyPI"
    fi
    exec 8>&-
}

step "Project venv (dvc + dvc-docker-exec)"
VENV=$("$HERE/scripts/venv.sh")
DVC=$VENV/bin/dvc
echo "$PROG: $VENV ($("$DVC" --version 2>/dev/null | head -n1 || echo '?'))"
# The stages need numpy; the host venv does not have it (and needs not).

# ---------------------------------------------------------- example repo ---
step "Example repo in $DIR"
# Only the example's sources: nothing generated by an earlier run in place.
tar -C "$EXAMPLE" --exclude=./.git --exclude=./.dvc --exclude=./wheels --exclude=./data \
    --exclude=./model --exclude=./plots --exclude=./metrics.json --exclude=./dvc.lock \
    --exclude=./dvc_plots --exclude=__pycache__ -c . | tar -C "$DIR" -x
cd "$DIR"
git init -q
if [ -z "$(git config user.email || true)" ]; then
    git config user.name "dvc-docker-exec example"
    git config user.email "example@dvc-docker-exec.invalid"
fi
"$DVC" init -q
# The stage image is code: dvc builds it from the Dockerfile (the first stage that
# runs builds it, once; `dvc status` tells when its inputs change), tagged $IMAGE.
"$DVC" config docker.build Dockerfile
"$DVC" config docker.build_args "BASE_IMAGE=$BASE"
"$DVC" config docker.image "$IMAGE"
"$DVC" config docker.pull never  # offline: nothing is pulled (the base image is local)
git add -A
git commit -q -m "Example pipeline, stages in containers of $IMAGE built from its Dockerfile"
step "Wheels for an offline image build"
prepare_wheels
# An earlier version of this script built $IMAGE itself: dvc never retags an image
# it did not build, so that old tag goes (the image stays if anything else names it).
if docker image inspect "$IMAGE" >/dev/null 2>&1 &&
        [ -z "$(docker image inspect -f '{{index .Config.Labels "dvc-docker-exec.build.inputs"}}' "$IMAGE")" ]; then
    docker image rm "$IMAGE" >/dev/null
fi
echo "$PROG: .dvc/config:"
sed 's/^/    /' .dvc/config

STAGES=$("$DVC" stage list --name-only | wc -l)

step "dvc repro ($STAGES stages)"
"$DVC" repro 2>&1 | tee "$WORK/repro.log"
in_containers=$(grep -c "in a container of image '$IMAGE'" "$WORK/repro.log" || true)
if grep -q "NOT in a container" "$WORK/repro.log" || [ "$in_containers" -ne "$STAGES" ]; then
    die "expected all $STAGES stages to run in containers of $IMAGE, saw $in_containers"
fi
git add -A
git commit -q -m "dvc repro"

step "dvc metrics show"
"$DVC" metrics show

step "dvc exp run -S train.lr=0.5 (prepare is unchanged and skipped)"
"$DVC" exp run -S train.lr=0.5 2>&1 | tee "$WORK/exp.log"
if grep -q "NOT in a container" "$WORK/exp.log" ||
        ! grep -q "in a container of image '$IMAGE'" "$WORK/exp.log"; then
    die "the experiment's stages did not run in containers of $IMAGE"
fi

step "dvc exp show"
"$DVC" exp show --no-pager --md --drop 'Created|State|Executor|^data/|^src/|^model/|^prepare\.|^evaluate\.'

# Files the stages wrote must belong to the invoking user (containers run as
# the caller's uid:gid), so the repo stays usable without sudo.
foreign=$(find "$DIR" \( ! -user "$(id -u)" -o ! -group "$(id -g)" \) -print | head -n 5)
[ -z "$foreign" ] || die "files not owned by $(id -un):$(id -gn): $foreign"

step "Done in $((SECONDS - T0))s: all $STAGES stages ran in containers of $IMAGE; files owned by $(id -un):$(id -gn)"
echo "Explore it:  cd $DIR && $DVC exp show"
echo "$DIR"
