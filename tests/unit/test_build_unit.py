"""Pure parts of the image as code (build.py, config's build keys)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from dvc_docker_exec.types import build as b
from dvc_docker_exec.config import DockerSettings, SettingError, derived_lock_name, derived_tag, parse_build, parse_build_args, parse_image, parse_target
from dvc_docker_exec.errors import DockerExecError


def make(tmp_path: Path, files: dict) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


# --- config ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["/etc/Dockerfile", "../x/Dockerfile", "..", "a/../../b", "", True, ["a"]])
def test_build_path_must_stay_in_the_repository(value):
    with pytest.raises(SettingError, match="relative to the repository root"):
        parse_build(value)


def test_build_path_normalised():
    assert parse_build("env/./Dockerfile") == "env/Dockerfile"
    assert parse_build("env/") == "env"


def test_build_args_and_target():
    assert parse_build_args("A=1, B=x=y") == (("A", "1"), ("B", "x=y"))
    assert parse_build_args(["A=1"]) == (("A", "1"),)
    for bad in ("A", "1A=2", "=x"):
        with pytest.raises(SettingError, match=f"'{bad}'"):
            parse_build_args(bad)
    assert parse_target("builder") == "builder"
    with pytest.raises(SettingError, match="'a b'"):
        parse_target("a b")


def test_derived_tag_is_a_valid_stable_reference():
    tag = derived_tag("My Project", "env/Dockerfile")
    assert tag == "dvc-build/my-project/env-dockerfile"
    assert parse_image(tag) == tag
    # what dvc.lock calls it: no project (the checkout's folder) in it, the same in every clone
    assert derived_lock_name("env/Dockerfile") == "dvc-build/env-dockerfile"
    assert parse_image(derived_lock_name("env/Dockerfile")) == "dvc-build/env-dockerfile"


def levels(*pairs):
    return DockerSettings.from_levels(list(pairs))


def test_image_as_tag_only_from_the_same_place():
    same = levels(("repo", {"build": "env", "image": "me/img:1"})).with_build_tag("p")
    assert (same.build, same.image) == ("env", "me/img:1")
    farther = levels(("global", {"image": "busybox"}), ("repo", {"build": "env"})).with_build_tag("p")
    assert (farther.build, farther.image) == ("env", "dvc-build/p/env")
    closer = levels(("repo", {"build": "env"})).override("python:3.12", "s").with_build_tag("p")
    assert (closer.build, closer.image) == (None, "python:3.12")
    meta = levels(("repo", {"image": "busybox"})).override({"build": "x/Dockerfile"}, "s").with_build_tag("p")
    assert (meta.build, meta.image, meta.active) == ("x/Dockerfile", "dvc-build/p/x-dockerfile", True)


# --- Dockerfile ---------------------------------------------------------------------------


def test_base_images_args_stages_scratch_continuations():
    text = """# syntax comment
ARG BASE=busybox:1
ARG TAG
FROM --platform=linux/amd64 ${BASE} AS builder
RUN echo \\
  FROM not-an-image
FROM scratch
FROM builder
from python:${TAG:-3.12} as final
COPY --from=builder /x /x
"""
    assert b.base_images(text) == ["busybox:1", "python:3.12"]
    assert b.base_images(text, [("BASE", "alpine"), ("TAG", "3.11")]) == ["alpine", "python:3.11"]


# --- context and identity -----------------------------------------------------------------


def spec(root: Path, dockerfile: str = "env/Dockerfile", **kwargs) -> b.BuildSpec:
    return b.spec_for(str(root), dockerfile, **kwargs)


def test_spec_folder_or_file_and_escapes(tmp_path):
    root = make(tmp_path / "r", {"env/Dockerfile": "FROM x\n"})
    assert spec(root, "env").dockerfile == "env/Dockerfile"
    assert spec(root, "env").context == "env"
    with pytest.raises(DockerExecError, match="no Dockerfile"):
        spec(root, "nope")
    outside = make(tmp_path / "out", {"Dockerfile": "FROM x\n"})
    os.symlink(outside, root / "link")
    with pytest.raises(DockerExecError, match="outside the repository"):
        spec(root, "link")


def test_dockerignore_and_dvc_state_are_not_in_the_context(tmp_path):
    root = make(tmp_path, {
        "Dockerfile": "FROM x\n", ".dockerignore": "# c\ndata\n*.log\n!keep.log\n", "a.py": "1",
        "data/big": "x", "x.log": "", "keep.log": "", ".git/HEAD": "", ".dvc/cache/ab": "", ".dvc/tmp/t": "",
        ".dvc/config": "",
    })
    files = b.context_files(spec(root, "Dockerfile"))
    assert "a.py" in files and "keep.log" in files and "Dockerfile" in files
    # DVC's folder, config included: config.local is this machine's (DVC rewrites it in experiment copies)
    assert not [f for f in files if f.startswith(("data", ".git", ".dvc")) or f == "x.log"]


def test_what_dvc_writes_is_never_in_the_context(tmp_path):
    """Stage outs, tracked data, dvc.lock and .dvc files: the image would depend on its own outputs."""
    root = make(tmp_path, {
        "Dockerfile": "FROM x\n", ".dockerignore": "!out\n", "a.py": "1", "out/m.json": "{}", "dvc.lock": "",
        "data.csv": "1", "data.csv.dvc": "", "sub/dvc.lock": "", "sub/keep": "", "dvc.yaml": "",
    })
    written = ("out", "dvc.lock", "data.csv", "data.csv.dvc", "sub/dvc.lock", "../elsewhere", "Dockerfile")
    files = b.context_files(spec(root, "Dockerfile", written=lambda: written))
    assert files == [".dockerignore", "Dockerfile", "a.py", "dvc.yaml", "sub", "sub/keep"]  # the Dockerfile: always
    before = b.context_digest(spec(root, "Dockerfile", written=lambda: written))
    (root / "out/m.json").write_text('{"a": 1}')
    (root / "dvc.lock").write_text("changed")
    assert b.context_digest(spec(root, "Dockerfile", written=lambda: written)) == before
    sent = b.write_context(spec(root, "Dockerfile", written=lambda: written), io.BytesIO())
    assert sent == before  # what is hashed is what is sent
    # a context in a subfolder: `written` is relative to the repository
    (root / "sub/Dockerfile").write_text("FROM x\n")
    assert b.context_files(spec(root, "sub", written=lambda: ("sub/dvc.lock", "out"))) == ["Dockerfile", "keep"]


def test_an_experiment_copy_names_the_files_it_lacks(tmp_path):
    """`exp run --temp`/--queue copies hold tracked files only: the untracked ones the build would get are named."""
    ws = make(tmp_path / "ws", {
        "env/Dockerfile": "FROM x\nCOPY . /\n", "env/a.py": "1", "env/notes.txt": "n", "env/lib/x.py": "",
        "env/.dockerignore": "ign\n", "env/ign": "", "env/out.csv": "",
    })
    copy = make(ws / ".dvc/tmp/exps/tmpab12", {"env/Dockerfile": "FROM x\nCOPY . /\n", "env/a.py": "1",
                                               "env/.dockerignore": "ign\n"})
    written = lambda: ("env/out.csv",)  # noqa: E731 - a stage writes it: not an input, not missing
    assert b.missing_from_copy(spec(copy, "env", written=written)) == ["lib/x.py", "notes.txt"]
    assert b.missing_from_copy(spec(ws, "env", written=written)) == []  # the workspace itself


def test_status_names_the_context_files_that_changed(tmp_path):
    """dvc.lock records one hash of the context; the files are named from the lists this machine kept."""
    root = make(tmp_path / "r", {"env/Dockerfile": "FROM x\n", "env/a.py": "1", "env/old.txt": ""})
    path = str(tmp_path / "cache.json")

    def resolve(ref: str) -> str:
        return "sha256:" + "0" * 64

    first = b.inputs_of(spec(root), resolve, b.HashCache.load(path))
    (root / "env/a.py").write_text("22")
    (root / "env/old.txt").unlink()
    (root / "env/new.txt").write_text("")
    now = b.inputs_of(spec(root), resolve, b.HashCache.load(path))
    assert now.identity != first.identity and now == b.inputs_of(spec(root), resolve)  # lists: not the identity
    assert b.what_changed(first.as_record(), now) == [
        "files of the build context changed (a.py changed, new.txt added, old.txt deleted)"
    ]
    # a context not hashed on this machine before (a fresh clone): no names
    assert b.what_changed(first.as_record(), b.inputs_of(spec(root), resolve)) == ["files of the build context changed"]
    for n in range(b.KEEP_CONTEXTS + 1):  # only the last few lists are kept
        (root / "env/a.py").write_text(str(n))
        b.inputs_of(spec(root), resolve, b.HashCache.load(path))
    assert len(b.HashCache.load(path).contexts) == b.KEEP_CONTEXTS


def digests(root: Path, **kwargs):
    return b.context_digest(spec(root, **kwargs))


def test_what_changes_the_digests(tmp_path):
    root = make(tmp_path, {"env/Dockerfile": "FROM x\nCOPY . /\n", "env/a.py": "1", "env/.dockerignore": "ign\n", "env/ign": "1"})
    dockerfile, context = digests(root)
    (root / "env/ign").write_text("2")  # ignored
    assert digests(root) == (dockerfile, context)
    (root / "env/a.py").write_text("2")
    assert digests(root) == (dockerfile, digests(root)[1]) and digests(root)[1] != context
    context2 = digests(root)[1]
    os.chmod(root / "env/a.py", 0o755)  # the executable bit counts, other mode bits do not
    assert digests(root)[1] != context2
    (root / "env/Dockerfile").write_text("FROM y\n")
    assert digests(root)[0] != dockerfile and digests(root)[1] != context  # context: a.py's bit


def test_hash_cache_reads_only_changed_files(tmp_path, monkeypatch):
    root = make(tmp_path / "r", {"env/Dockerfile": "FROM x\n", "env/a": "1", "env/b": "2"})
    cache_file = str(tmp_path / "cache.json")
    first = b.context_digest(spec(root), b.HashCache.load(cache_file))
    read = []
    real = b._file_digest
    monkeypatch.setattr(b, "_file_digest", lambda path: read.append(os.path.basename(path)) or real(path))
    assert b.context_digest(spec(root), b.HashCache.load(cache_file)) == first and read == []
    (root / "env/a").write_text("changed, longer")
    assert b.context_digest(spec(root), b.HashCache.load(cache_file)) != first and read == ["a"]


def test_tar_holds_what_was_hashed(tmp_path):
    root = make(tmp_path, {"env/Dockerfile": "FROM x\n", "env/a": "1", "env/sub/b": "2", "env/.dockerignore": "c\n", "env/c": ""})
    os.symlink("a", root / "env/l")
    out = io.BytesIO()
    dockerfile, context = b.write_context(spec(root), out)
    assert (dockerfile, context) == digests(root)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"Dockerfile", "a", "sub", "sub/b", "l", ".dockerignore"}
    assert members["l"].issym() and all(m.uid == 0 and m.gid == 0 for m in members.values())


def test_identity_and_what_changed():
    base = b.BuildInputs("sha256:d", "sha256:c", b.args_digest([("A", "1")]), "", (("busybox", "sha256:1"),))
    assert b.is_built(base.identity) and base.identity == b.BuildInputs(*[getattr(base, f) for f in ("dockerfile", "context", "args", "target", "bases")]).identity
    record = base.as_record()
    assert b.what_changed(None, base) == ["not built before"]
    changed = b.BuildInputs("sha256:e", "sha256:c", base.args, "t", (("busybox", "sha256:2"),))
    assert b.what_changed(record, changed) == ["Dockerfile changed", "target '' -> 't'", "base image 'busybox' changed"]
    assert changed.identity != base.identity
    assert "secret" not in str(b.BuildInputs("d", "c", b.args_digest([("TOKEN", "secret")]), "", ()).as_record())


def test_registry_is_a_host_and_machine_level_only():
    from dvc_docker_exec.stage import trust
    from dvc_docker_exec.config import parse_registry

    assert parse_registry("127.0.0.1:5000/") == "127.0.0.1:5000"
    assert parse_registry("registry.example.com/team") == "registry.example.com/team"
    for bad in ("team", "http://x:5000", "x:5000/Team"):
        with pytest.raises(SettingError, match="expected a registry"):
            parse_registry(bad)
    with pytest.raises(SettingError, match="can only be set on this machine"):
        levels().override({"registry": "r:5000"}, "s")
    repo_level = levels(("repo", {"image": "busybox", "registry": "r:5000"}))
    with pytest.raises(SettingError, match="chooses where built images are pushed"):
        trust.check(repo_level, "s", trust.Invoker(1000, 1000, ("/repo",)))
    trust.check(levels(("local", {"image": "busybox", "registry": "r:5000"})), "s", trust.Invoker(1000, 1000, ("/repo",)))


def test_build_failure_message_names_step_code_and_tail():
    from dvc_docker_exec.backends.builder import BuildDisplay, BuildFailed

    display = BuildDisplay("env/Dockerfile", io.StringIO())
    for line in ("Step 1/2 : FROM busybox\n", " ---> abc\n", "Step 2/2 : RUN make\n", " ---> Running in x\n", "cc: error\n"):
        display.feed({"stream": line})
    with pytest.raises(BuildFailed) as info:
        display.feed({"error": "The command '/bin/sh -c make' returned a non-zero code: 2",
                      "errorDetail": {"code": 2, "message": "The command '/bin/sh -c make' returned a non-zero code: 2"}})
    text = str(info.value)
    assert text.startswith("cannot build the image of 'env/Dockerfile': step 2/2 'RUN make' failed with exit code 2")
    assert text.endswith("last lines of its output:\n  cc: error")


@pytest.mark.parametrize("ignore", ["", "data\n", "data\n!data/keep\n", "*/*.log\n!a/b.log\n", "**/x\n", "/a/\nDockerfile\n"])
def test_walk_matches_docker_py_exclude_paths(tmp_path, ignore):
    from docker.utils.build import exclude_paths

    root = make(tmp_path, {"Dockerfile": "FROM x\n", "data/keep": "", "data/drop": "", "a/b.log": "", "a/c.log": "",
                           "a/x": "", "d/e/x": "", "top.log": ""})
    if ignore:
        (tmp_path / ".dockerignore").write_text(ignore)
    os.symlink("data", tmp_path / "link")
    expected = sorted(exclude_paths(str(root), b.read_dockerignore(str(root)), dockerfile="Dockerfile"))
    memo: dict = {}
    assert b.context_files(spec(root, "Dockerfile"), memo) == expected
    assert b.context_files(spec(root, "Dockerfile"), memo) == expected  # from the memo


class FakeAPI:
    def __init__(self):
        self.build_kwargs: dict = {}
        self.context = b""

    def build(self, **kwargs):
        self.build_kwargs = kwargs
        self.context = kwargs["fileobj"].read()
        return iter([{"stream": "Step 1/1 : FROM busybox\n"}, {"aux": {"ID": "sha256:" + "c" * 64}}])


def test_a_build_asks_for_nothing_beyond_dockers_defaults(tmp_path):
    """Item 8: no host mount, network, secret, SSH, privilege or cache source: the repository chooses none."""
    from types import SimpleNamespace

    from dvc_docker_exec.backends.builder import Builder

    root = make(tmp_path, {"env/Dockerfile": "FROM busybox\n", "env/a": "1"})
    s = spec(root, "env", args=(("A", "1"),), target="t", tag="x/y")
    api = FakeAPI()
    builder = Builder(SimpleNamespace(api=api), images=None, out=io.StringIO())
    inputs = b.inputs_of(s, lambda ref: "sha256:" + "b" * 64)
    assert builder._build(s, inputs) == "sha256:" + "c" * 64
    kwargs = api.build_kwargs
    assert set(kwargs) == {"fileobj", "custom_context", "dockerfile", "buildargs", "target", "labels", "rm", "forcerm",
                           "pull", "decode"}
    assert kwargs["labels"][b.LABEL_INPUTS] == inputs.identity and kwargs["buildargs"] == {"A": "1"}
    assert kwargs["custom_context"] is True and kwargs["forcerm"] is True and kwargs["dockerfile"] == "Dockerfile"
    with tarfile.open(fileobj=io.BytesIO(api.context)) as tar:
        assert sorted(tar.getnames()) == ["Dockerfile", "a"]


def test_a_context_changed_after_hashing_is_not_built(tmp_path):
    from types import SimpleNamespace

    from dvc_docker_exec.backends.builder import Builder

    root = make(tmp_path, {"env/Dockerfile": "FROM busybox\n", "env/a": "1"})
    s = spec(root, "env")
    inputs = b.inputs_of(s, lambda ref: "sha256:" + "b" * 64)
    (root / "env/a").write_text("2")
    api = FakeAPI()
    with pytest.raises(DockerExecError, match="changed while it was read: nothing was built"):
        Builder(SimpleNamespace(api=api), images=None, out=io.StringIO())._build(s, inputs)
    assert api.build_kwargs == {}


class LosingAPI(FakeAPI):
    """The daemon loses the previous step's image `losses` times (another build or an image removal meanwhile)."""

    def __init__(self, losses: int):
        super().__init__()
        self.losses, self.builds = losses, 0

    def build(self, **kwargs):
        self.builds += 1
        if self.builds <= self.losses:
            kwargs["fileobj"].read()
            parent = "sha256:" + "a" * 64
            message = f"failed to export image: failed to set parent {parent}: unknown parent image ID {parent}"
            return iter([{"stream": "Step 1/2 : FROM busybox\n"}, {"stream": "Step 2/2 : COPY a /a\n"},
                         {"error": message, "errorDetail": {"message": message}}])
        return super().build(**kwargs)


@pytest.mark.parametrize("losses, built", [(1, True), (2, False)])
def test_a_step_whose_parent_image_vanished_is_built_once_more(tmp_path, caplog, losses, built):
    """Seen under 3 test workers: a daemon race (moby/moby#18976), not a fault of the stage's Dockerfile."""
    from types import SimpleNamespace

    from dvc_docker_exec.backends.builder import BuildFailed, Builder

    root = make(tmp_path, {"env/Dockerfile": "FROM busybox\nCOPY a /a\n", "env/a": "1"})
    s = spec(root, "env")
    inputs = b.inputs_of(s, lambda ref: "sha256:" + "b" * 64)
    api = LosingAPI(losses)
    builder = Builder(SimpleNamespace(api=api), images=None, out=io.StringIO())
    if built:
        assert builder._build(s, inputs) == "sha256:" + "c" * 64
        with tarfile.open(fileobj=io.BytesIO(api.context)) as tar:  # the second build got the whole context
            assert sorted(tar.getnames()) == ["Dockerfile", "a"]
        assert [r.message for r in caplog.records if "building it once more" in r.message]
    else:
        with pytest.raises(BuildFailed, match="step 2/2 'COPY a /a' failed: .*unknown parent image ID"):
            builder._build(s, inputs)
    assert api.builds == 2
