# The "runner" of the Docker socket pattern: Python, git, DVC and the
# dvc-docker-exec plugin. DVC runs in this container; every stage runs in a
# SIBLING container that DVC starts through the host's Docker socket (mounted
# at /var/run/docker.sock). See docs/socket-pattern.md and docker-compose.yml.
#
# Online (pip from PyPI; git from apt if the base image lacks it):
#
#   docker build -t dvc-docker-exec/runner .
#
# Offline (no index, no apt; `docker build --network none` works): a base
# image that already has python3 (with venv) and git, and a wheelhouse in the
# build context, as scripts/build-images.sh runner prepares it:
#
#   wheels/*.whl         the dependencies  (pip wheel -w wheels .  then drop ours)
#   wheels/plugin/*.whl  this plugin       (pip wheel --no-deps -w wheels/plugin .)
#
#   docker build --network none --build-arg BASE_IMAGE=my/python-with-git \
#       -t dvc-docker-exec/runner .
#
# A flat wheelhouse that also holds the plugin's wheel (`pip wheel -w wheels .`)
# works too. The plugin's wheel goes into its own layer, so rebuilding after a
# source change does not reinstall DVC.
#
# Run it as root (the default) or as any uid that can use the socket:
#   docker run --rm --user "$(id -u):$(id -g)" \
#       --group-add "$(stat -c %g /var/run/docker.sock)" \
#       -v /var/run/docker.sock:/var/run/docker.sock \
#       -v "$PWD:/workspace" -w /workspace dvc-docker-exec/runner dvc repro
# HOME is /home/dvc, writable by every uid (mode 1777), so no passwd entry is
# needed; stages then run as that same uid:gid and their outputs belong to it.

ARG BASE_IMAGE=python:3.12-slim

# ------------------------------------------------------------------ venv ---
# The dependencies in /opt/venv. Cached until the wheelhouse changes.
FROM ${BASE_IMAGE} AS venv
ARG WHEELS=wheels
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/venv
# pyproject.toml is always there, so this COPY works without a wheelhouse too
COPY pyproject.toml ${WHEELS}/*.whl /tmp/dde/wheels/
RUN set -eu; cd /tmp/dde/wheels; \
    if ls ./*.whl >/dev/null 2>&1; then \
        /opt/venv/bin/pip install -q --no-index --find-links . ./*.whl; \
    fi

# ---------------------------------------------------------------- runner ---
FROM ${BASE_IMAGE}
ARG WHEELS=wheels
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1

# git: DVC projects are git repositories. safe.directory '*': the project is
# bind-mounted from the host and usually owned by another uid than the one
# running here; git (and libgit2) would refuse it as "dubious ownership".
# /home/dvc is HOME for whatever uid runs the container.
RUN set -eu; \
    if ! command -v git >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
        apt-get update -q || true; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends git || true; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    if ! command -v git >/dev/null 2>&1; then \
        echo "ERROR: git is not in BASE_IMAGE and apt-get could not install it" \
             "(offline build?): use a base image that has git" >&2; \
        exit 1; \
    fi; \
    git --version; \
    git config --system --add safe.directory '*'; \
    mkdir -p -m 1777 /home/dvc; \
    mkdir -p /workspace

COPY --from=venv /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    HOME=/home/dvc

# The plugin: its wheel from the wheelhouse, else built here from the source
# (dependencies from PyPI). A flat wheelhouse installed it in the venv stage.
COPY setup.py setup.cfg pyproject.toml MANIFEST.in README.md dvc_docker_exec.pth dvc_docker_exec_hook.py /tmp/dde/src/
COPY dvc_docker_exec /tmp/dde/src/dvc_docker_exec/
COPY pyproject.toml ${WHEELS}/plugin/*.whl /tmp/dde/plugin/
RUN set -eu; \
    if ls /tmp/dde/plugin/*.whl >/dev/null 2>&1; then \
        pip install -q --no-index --no-deps --force-reinstall /tmp/dde/plugin/*.whl; \
    elif ! pip show -q dvc-docker-exec 2>/dev/null; then \
        pip install -q /tmp/dde/src; \
    fi; \
    rm -rf /tmp/dde; \
    python -c 'import docker, dvc, dvc_docker_exec.backends.runner'; \
    dvc --version

WORKDIR /workspace
# A uid without a passwd entry (`--user 4242:4242`) has no name: Python's
# getpass.getuser(), which DVC calls, would fail. Name it "dvc" through
# USER/LOGNAME, which getuser() reads first; a known user keeps its own name.
ENTRYPOINT ["/bin/sh", "-c", "id -un >/dev/null 2>&1 || export USER=\"${USER:-dvc}\" LOGNAME=\"${LOGNAME:-dvc}\"; exec \"$@\"", "dvc-runner"]
LABEL org.opencontainers.image.title="dvc-docker-exec runner" \
      org.opencontainers.image.description="DVC with the dvc-docker-exec plugin: stages run as sibling containers through the mounted Docker socket"
CMD ["dvc", "--help"]
