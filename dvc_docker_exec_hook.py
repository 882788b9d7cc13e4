"""Import hook loaded by ``dvc_docker_exec.pth`` at every Python start.

Stdlib only and nothing but a ``sys.meta_path`` entry: it costs microseconds
and imports neither dvc nor docker, nor the ``dvc_docker_exec`` package (a
top-level module for that reason: a module inside the package would run the
package's ``__init__`` first). ``dvc_docker_exec.dvc_glue`` is imported only
when DVC itself imports one of the modules below: the real loader runs first
and then our patch, so the plugin is active for the ``dvc`` script,
``python -m dvc``, the Python API and DVC's own subprocesses (queue workers run
``dvc exp exec-run``) alike.
"""

import sys

# module -> function in dvc_docker_exec.dvc_glue called with the fresh module
_TARGETS = {
    "dvc.config_schema": "register_config_schema",
    "dvc.stage.run": "patch_stage_run",
    "dvc.stage": "patch_stage",  # check daemon and image before Stage.run deletes the outputs
    "dvc.cli.parser": "register_commands",  # `dvc docker ...`
    "dvc.commands.experiments.exec_run": "patch_exec_run",  # queue logs: each error once
    # provenance: the image as a dependency (dvc_docker_exec/dependency/tracking.py)
    "dvc.stage.loader": "patch_stage_loader",
    "dvc.repo.stage": "patch_repo_stage",
    "dvc.stage.serialize": "patch_stage_serialize",
    "dvc.stage.cache": "patch_stage_cache",
    "dvc.repo.experiments.serialize": "patch_exp_serialize",
    "dvc.repo.status": "patch_repo_status",
    "dvc.repo.reproduce": "patch_repo_reproduce",
}


class _PatchingLoader:
    def __init__(self, loader, fullname):
        self._loader = loader
        self._fullname = fullname

    def __getattr__(self, name):  # get_data, get_filename, is_package...
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        try:
            from dvc_docker_exec import dvc_glue

            getattr(dvc_glue, _TARGETS[self._fullname])(module)
        except Exception as exc:  # never break DVC because of the plugin
            sys.stderr.write(f"WARNING: dvc-docker-exec could not patch {self._fullname}: {exc!r}\n")


class _Finder:
    """Wraps the loader of the target modules; defers everything else."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _PatchingLoader(spec.loader, fullname)
        return spec


def install():
    if not any(type(f).__name__ == "_Finder" and type(f).__module__ == __name__ for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    # imported late (e.g. by a test after dvc): patch what is already loaded
    for name, func in _TARGETS.items():
        module = sys.modules.get(name)
        if module is not None and not getattr(module, "_dvc_docker_exec_patched", False):
            from dvc_docker_exec import dvc_glue

            getattr(dvc_glue, func)(module)


install()
