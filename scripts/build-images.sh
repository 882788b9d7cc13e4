#!/usr/bin/env bash
# Build the Docker images used by the dvc-docker-exec tests, fully offline
# (no registry is needed: nothing is pulled, there is no public FROM image).
#
#   dvc-docker-exec-test/busybox:latest      FROM scratch + Debian's static busybox
#   dvc-docker-exec-test/python:bookworm     debootstrap'ed Debian bookworm minbase
#                                            with python3 (docker import)
#   dvc-docker-exec-test/python-dvc:bookworm python image + venv /opt/venv with
#                                            dvc and dvclive (from a host-built
#                                            wheelhouse); no dvc-docker-exec plugin
#   dvc-docker-exec-test/python-git:bookworm the python recipe plus git (debootstrap):
#                                            base of the runner (no apt in builds)
#   dvc-docker-exec-test/runner:latest       the repo's own Dockerfile (DVC + this
#                                            plugin, socket pattern) built offline on
#                                            python-git with a host-built wheelhouse
#
# Usage: scripts/build-images.sh [busybox|python|python-dvc|python-git|runner ...]
#        (default: busybox python python-dvc; runner builds python-git if needed)
#
# An image whose tag already exists (with this script's recipe label, and for
# python-dvc on top of the current python image) is skipped unless FORCE=1.
# The runner is rebuilt whenever the plugin source, the setup files, the
# Dockerfile or python-git change (their hash is in a label), so tests always
# run the current code.
# The debootstrap
# rootfs tarball and the wheelhouse are cached in $DDE_CACHE (default
# ~/.cache/dvc-docker-exec); DDE_REFRESH_CACHE=1 rebuilds them.
# Other knobs: DDE_DEBIAN_MIRROR (default: the mirror apt uses, else
# http://deb.debian.org/debian), DDE_SUITE (default bookworm),
# DDE_PIP_PACKAGES (default "dvc dvclive").
#
# Quiet: one status line on success; on failure the tail of the step's log.
set -euo pipefail

PROG=build-images
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"
FORCE=${FORCE:-0}
DDE_REFRESH_CACHE=${DDE_REFRESH_CACHE:-0}
CACHE=${DDE_CACHE:-$HOME/.cache/dvc-docker-exec}
SUITE=${DDE_SUITE:-bookworm}
PIP_PACKAGES=${DDE_PIP_PACKAGES:-dvc dvclive}
# The legacy builder is what Debian's docker.io 20.10 uses by default and it
# needs no buildx plugin; it also honours --network none.
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}

NS=dvc-docker-exec-test
IMG_BUSYBOX=$NS/busybox:latest
IMG_PYTHON=$NS/python:$SUITE
IMG_PYDVC=$NS/python-dvc:$SUITE
# Every image carries the label dvc-docker-exec-test=<recipe id>; an existing
# tag without the current recipe id (built by something else, or by an older
# version of this script) is rebuilt.  Bump an id when its recipe changes.
LABEL_KEY=dvc-docker-exec-test
RECIPE_BUSYBOX=busybox-1
RECIPE_PYTHON=python-1
RECIPE_PYDVC=python-dvc-1
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() { echo "$PROG: ERROR: $*" >&2; exit 1; }

SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo -n)

"$HERE/ensure-docker.sh" >/dev/null

mkdir -p "$CACHE"
# Serialise concurrent runs (they would fight over the cache and the tags).
exec 9>"$CACHE/.lock"
flock 9

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dde-build.XXXXXX")
ROOTFS=""
cleanup() {
    local rc=$?
    if [ -n "$ROOTFS" ] && [ -d "$ROOTFS" ]; then
        # debootstrap may leave /proc, /sys ... mounted in the target on failure:
        # unmount (deepest first) and never cross a file system while deleting.
        awk -v d="$ROOTFS" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
            while read -r m; do "${SUDO[@]}" umount -l "$m" 2>/dev/null || true; done
        "${SUDO[@]}" rm -rf --one-file-system "$ROOTFS"
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run LOGNAME CMD...: run quietly, show the log tail if it fails.
run() {
    local log="$WORK/$1.log"
    shift
    if ! "$@" >>"$log" 2>&1; then
        echo "$PROG: ERROR: command failed: $*" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# need_build TAG RECIPE: 0 when TAG must be (re)built.
need_build() {
    [ "$FORCE" = 1 ] && return 0
    have_image "$1" || return 0
    [ "$(docker image inspect -f "{{index .Config.Labels \"$LABEL_KEY\"}}" "$1" 2>/dev/null)" != "$2" ]
}

status=()
note() { status+=("$1"); }

# --------------------------------------------------------------- busybox ---
build_busybox() {
    if ! need_build "$IMG_BUSYBOX" "$RECIPE_BUSYBOX"; then note "busybox=cached"; return; fi
    local t0=$SECONDS bb=/bin/busybox
    [ -x "$bb" ] || die "$bb missing (install busybox-static)"
    # A FROM scratch image needs a statically linked busybox.
    if ldd "$bb" 2>&1 | grep -q '=>'; then
        die "$bb is dynamically linked; install busybox-static instead of busybox"
    fi
    local ctx="$WORK/busybox"
    mkdir -p "$ctx"
    cp "$bb" "$ctx/busybox"
    cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/busybox", "mkdir", "-p", "-m", "1777", "/tmp"]
ENV PATH=$IMAGE_PATH
LABEL $LABEL_KEY=$RECIPE_BUSYBOX
CMD ["sh"]
EOF
    run busybox docker build --network none --force-rm -q -t "$IMG_BUSYBOX" "$ctx"
    note "busybox=built($((SECONDS - t0))s)"
}

# ---------------------------------------------------------------- python ---
# Mirror of the Debian archive apt already uses on this host (a line/stanza
# for "$SUITE" with component main), else deb.debian.org.
debian_mirror() {
    if [ -n "${DDE_DEBIAN_MIRROR:-}" ]; then echo "$DDE_DEBIAN_MIRROR"; return; fi
    local f m=""
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        m=$(awk -v s="$SUITE" '
            $1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                uri = $i; suite = $(i + 1)
                if (suite != s) next
                for (j = i + 2; j <= NF; j++) if ($j == "main") { print uri; exit }
            }' "$f")
        [ -n "$m" ] && break
    done
    if [ -z "$m" ]; then
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -r "$f" ] || continue
            m=$(awk -v s="$SUITE" '
                function check() {
                    if (types ~ /(^| )deb( |$)/ && enabled !~ /^[Nn]o/ &&
                        (" " suites " ") ~ (" " s " ") && (" " comps " ") ~ / main /) {
                        split(uris, u, " "); print u[1]; found = 1; exit
                    }
                    types = uris = suites = comps = enabled = ""
                }
                /^[ \t]*#/ { next }
                /^[ \t]*$/ { check(); next }
                { key = tolower($1); sub(/^[^:]*:[ \t]*/, "") }
                key == "types:" { types = $0 }
                key == "uris:" { uris = $0 }
                key == "suites:" { suites = $0 }
                key == "components:" { comps = $0 }
                key == "enabled:" { enabled = $0 }
                END { if (!found) check() }' "$f")
            [ -n "$m" ] && break
        done
    fi
    echo "${m:-http://deb.debian.org/debian}"
}

build_python() {
    if ! need_build "$IMG_PYTHON" "$RECIPE_PYTHON"; then note "python=cached"; return; fi
    local t0=$SECONDS include=python3,python3-venv,python-is-python3,ca-certificates
    local tarball="$CACHE/rootfs-$SUITE-minbase-python3.tar.gz" how="cached rootfs"
    if [ "$DDE_REFRESH_CACHE" = 1 ] || [ ! -s "$tarball" ]; then
        debootstrap_tarball "$include" "$tarball"
        how=$DEBOOTSTRAP_HOW
    fi
    run import docker import \
        --change "ENV PATH=$IMAGE_PATH" \
        --change "ENV LANG=C.UTF-8" \
        --change "LABEL $LABEL_KEY=$RECIPE_PYTHON" \
        --change 'CMD ["python3"]' \
        - "$IMG_PYTHON" <"$tarball"
    note "python=built($((SECONDS - t0))s, $how)"
}

# ------------------------------------------------------------ python-dvc ---

build_wheelhouse() {
    local pyver=$1 wheels=$2 py
    # Marker records what the wheelhouse was built for.
    local marker="$wheels/.complete" want="python$pyver: $PIP_PACKAGES"
    if [ "$DDE_REFRESH_CACHE" != 1 ] && [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ]; then
        return
    fi
    if ! py=$(host_python "$pyver"); then
        # On a Debian bookworm host, apt's python3 is the image's 3.11.
        command -v apt-get >/dev/null 2>&1 || die "no host python$pyver with pip to build wheels"
        run apt "${SUDO[@]}" apt-get update -q
        run apt "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends python3-pip
        py=$(host_python "$pyver") || die "no host python$pyver with pip to build wheels"
    fi
    rm -rf "$wheels"
    mkdir -p "$wheels"
    # shellcheck disable=SC2086
    run wheels env PIP_DISABLE_PIP_VERSION_CHECK=1 "$py" -m pip wheel -q \
        -w "$wheels" $PIP_PACKAGES
    echo "$want" >"$marker"
    WHEELS_BUILT=1
}

# 0 when image $2 is built on top of the current image $1 (layer prefix).
built_on() {
    local base img
    base=$(docker image inspect -f '{{join .RootFS.Layers " "}}' "$1" 2>/dev/null) || return 1
    img=$(docker image inspect -f '{{join .RootFS.Layers " "}}' "$2" 2>/dev/null) || return 1
    [ -n "$base" ] && [[ "$img" == "$base"* ]]
}

build_python_dvc() {
    if ! need_build "$IMG_PYDVC" "$RECIPE_PYDVC" && built_on "$IMG_PYTHON" "$IMG_PYDVC"; then
        note "python-dvc=cached"; return
    fi
    local t0=$SECONDS pyver
    have_image "$IMG_PYTHON" || die "$IMG_PYTHON missing (build it first)"
    pyver=$(docker run --rm --network none "$IMG_PYTHON" \
        python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])') ||
        die "cannot run python3 in $IMG_PYTHON"
    local wheels="$CACHE/wheels-py$pyver"
    WHEELS_BUILT=0
    build_wheelhouse "$pyver" "$wheels"

    local ctx="$WORK/python-dvc"
    mkdir -p "$ctx"
    # Hard links keep the context cheap when $WORK and the cache share a fs.
    cp -al "$wheels" "$ctx/wheels" 2>/dev/null || cp -a "$wheels" "$ctx/wheels"
    # Two stages so the wheels never end up in a layer of the final image.
    cat >"$ctx/Dockerfile" <<EOF
FROM $IMG_PYTHON AS venv
LABEL $LABEL_KEY.stage=venv
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install -q --no-index --find-links /tmp/wheels \\
        --no-cache-dir --disable-pip-version-check $PIP_PACKAGES \\
 && chmod -R a+rX /opt/venv \\
 && /opt/venv/bin/dvc --version

FROM $IMG_PYTHON
COPY --from=venv /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$IMAGE_PATH
LABEL $LABEL_KEY=$RECIPE_PYDVC
CMD ["python3"]
EOF
    run python-dvc docker build --network none --force-rm -q -t "$IMG_PYDVC" "$ctx"
    # Drop the (untagged) venv stage the legacy builder keeps around.
    docker image prune -f --filter "label=$LABEL_KEY.stage=venv" >/dev/null 2>&1 || true
    local how="cached wheels"
    [ "$WHEELS_BUILT" = 1 ] && how="wheels built"
    note "python-dvc=built($((SECONDS - t0))s, $how)"
}

# ------------------------------------------------------------ python-git ---
# The runner's Dockerfile cannot apt-get git in an offline build, so the base
# image brings it: the python recipe with git added to the debootstrap.
IMG_PYGIT=$NS/python-git:$SUITE
RECIPE_PYGIT=python-git-1

# debootstrap_tarball INCLUDE TARBALL: a minbase rootfs with INCLUDE, as a
# tarball (same trimming as build_python); sets DEBOOTSTRAP_HOW.
DEBOOTSTRAP_HOW=""
debootstrap_tarball() {
    local include=$1 tarball=$2 mirror
    command -v debootstrap >/dev/null 2>&1 || die "debootstrap missing"
    mirror=$(debian_mirror)
    ROOTFS=$(mktemp -d "${TMPDIR:-/tmp}/dde-rootfs.XXXXXX")
    run debootstrap "${SUDO[@]}" debootstrap --variant=minbase --include="$include" \
        "$SUITE" "$ROOTFS" "$mirror"
    "${SUDO[@]}" sh -c "cd '$ROOTFS' &&
        rm -rf var/lib/apt/lists/* var/cache/apt/*.bin var/cache/apt/archives/*.deb \
               var/cache/debconf/*-old var/lib/dpkg/*-old var/log/*.log \
               debootstrap &&
        : > etc/resolv.conf && : > etc/hostname"
    if ! "${SUDO[@]}" tar --numeric-owner --one-file-system -C "$ROOTFS" \
            --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . \
            2>"$WORK/tar.log" | gzip -1 >"$tarball.tmp"; then
        cat "$WORK/tar.log" >&2
        rm -f "$tarball.tmp"
        die "could not tar the rootfs into $tarball"
    fi
    mv -f "$tarball.tmp" "$tarball"
    "${SUDO[@]}" rm -rf --one-file-system "$ROOTFS"
    ROOTFS=""
    DEBOOTSTRAP_HOW="debootstrap from $mirror"
}

build_python_git() {
    if ! need_build "$IMG_PYGIT" "$RECIPE_PYGIT"; then note "python-git=cached"; return; fi
    local t0=$SECONDS include=python3,python3-venv,python-is-python3,ca-certificates,git
    local tarball="$CACHE/rootfs-$SUITE-minbase-python3-git.tar.gz" how="cached rootfs"
    if [ "$DDE_REFRESH_CACHE" = 1 ] || [ ! -s "$tarball" ]; then
        debootstrap_tarball "$include" "$tarball"
        how=$DEBOOTSTRAP_HOW
    fi
    run import-git docker import \
        --change "ENV PATH=$IMAGE_PATH" \
        --change "ENV LANG=C.UTF-8" \
        --change "LABEL $LABEL_KEY=$RECIPE_PYGIT" \
        --change 'CMD ["python3"]' \
        - "$IMG_PYGIT" <"$tarball"
    note "python-git=built($((SECONDS - t0))s, $how)"
}

# ---------------------------------------------------------------- runner ---
# The repo's Dockerfile, built offline (--network none) FROM python-git with a
# wheelhouse made on the host in the build context: wheels/*.whl are the
# plugin's dependencies (cached in $CACHE, rebuilt when the setup files
# change), wheels/plugin/ holds the plugin's wheel of the current source.
IMG_RUNNER=$NS/runner:latest
# The dependency stage is tagged so that the pruning below keeps its layers:
# a source change then only reinstalls the plugin's wheel.
IMG_RUNNER_VENV=$NS/runner-venv:latest
RECIPE_RUNNER=runner-1
REPO=$(cd "$HERE/.." && pwd)

# runner_context DIR: the files the Dockerfile copies (package: *.py only, its sub-packages too).
runner_context() {
    local dir=$1 f
    mkdir -p "$dir/dvc_docker_exec"
    for f in Dockerfile setup.py setup.cfg pyproject.toml MANIFEST.in dvc_docker_exec.pth dvc_docker_exec_hook.py; do
        cp "$REPO/$f" "$dir/$f" || die "$REPO/$f missing"
    done
    # setup.cfg's long_description; not part of the hash (docs only)
    if [ -f "$REPO/README.md" ]; then cp "$REPO/README.md" "$dir/"; else : >"$dir/README.md"; fi
    (cd "$REPO" && find dvc_docker_exec -name '*.py' -print0 | xargs -0 cp --parents -t "$dir")
}

# runner_host_python VERSION: like build_wheelhouse, install pip if needed.
runner_host_python() {
    local py
    if py=$(host_python "$1"); then echo "$py"; return; fi
    command -v apt-get >/dev/null 2>&1 || die "no host python$1 with pip to build wheels"
    run apt "${SUDO[@]}" apt-get update -q
    run apt "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends python3-pip
    host_python "$1" || die "no host python$1 with pip to build wheels"
}

build_runner() {
    build_python_git
    local t0=$SECONDS ctx="$WORK/runner" src="$WORK/runner-src" hash
    runner_context "$ctx"
    hash=$( { (cd "$ctx" && LC_ALL=C find . -type f ! -name README.md | LC_ALL=C sort | xargs sha1sum)
              docker image inspect -f '{{.Id}}' "$IMG_PYGIT"; echo "$RECIPE_RUNNER"; } |
            sha1sum | cut -c1-40)
    if [ "$FORCE" != 1 ] && have_image "$IMG_RUNNER" &&
            [ "$(docker image inspect -f "{{index .Config.Labels \"$LABEL_KEY.source\"}}" \
                 "$IMG_RUNNER" 2>/dev/null)" = "$hash" ]; then
        note "runner=cached"; return
    fi
    local pyver py
    pyver=$(docker run --rm --network none "$IMG_PYGIT" \
        python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])') ||
        die "cannot run python3 in $IMG_PYGIT"
    py=$(runner_host_python "$pyver")
    # pip builds in the source tree: give it a copy (no build/ in the repo
    # or in the context)
    cp -a "$ctx" "$src"

    # Dependencies: everything `pip wheel` of the project resolves, minus ours.
    local deps="$CACHE/wheels-runner-py$pyver" how="cached wheels" want
    want="python$pyver: $(cd "$ctx" && cat setup.py setup.cfg pyproject.toml | sha1sum | cut -c1-40)"
    if [ "$DDE_REFRESH_CACHE" = 1 ] || [ ! -f "$deps/.complete" ] ||
            [ "$(cat "$deps/.complete")" != "$want" ]; then
        rm -rf "$deps"
        mkdir -p "$deps"
        run runner-wheels env PIP_DISABLE_PIP_VERSION_CHECK=1 "$py" -m pip wheel -q \
            -w "$deps" "$src"
        rm -f "$deps"/dvc_docker_exec-*.whl
        echo "$want" >"$deps/.complete"
        how="wheels built"
    fi
    mkdir -p "$ctx/wheels/plugin"
    cp -al "$deps"/*.whl "$ctx/wheels/" 2>/dev/null || cp -a "$deps"/*.whl "$ctx/wheels/"
    run runner-plugin env PIP_DISABLE_PIP_VERSION_CHECK=1 "$py" -m pip wheel -q --no-deps \
        -w "$ctx/wheels/plugin" "$src"

    local args=(--network none --force-rm -q --build-arg "BASE_IMAGE=$IMG_PYGIT")
    run runner docker build "${args[@]}" --target venv -t "$IMG_RUNNER_VENV" "$ctx"
    run runner docker build "${args[@]}" \
        --label "$LABEL_KEY=$RECIPE_RUNNER" --label "$LABEL_KEY.source=$hash" \
        -t "$IMG_RUNNER" "$ctx"
    note "runner=built($((SECONDS - t0))s, $how)"
}

# ------------------------------------------------------------------ main ---
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(busybox python python-dvc runner)
T0=$SECONDS
for t in "${targets[@]}"; do
    case $t in
        busybox) build_busybox ;;
        python) build_python ;;
        python-dvc) build_python_dvc ;;
        python-git) build_python_git ;;
        runner) build_runner ;;
        *) die "unknown image '$t' (busybox, python, python-dvc, python-git, runner)" ;;
    esac
done

# Old versions of our images that lost their tag (unless a container uses them).
docker image prune -f --filter "label=$LABEL_KEY" >/dev/null 2>&1 || true

sizes=$(docker images --format '{{.Repository}}:{{.Tag}}={{.Size}}' "$NS/*" | sort | paste -sd ' ' -)
echo "$PROG: ok in $((SECONDS - T0))s: ${status[*]}; sizes: $sizes"
