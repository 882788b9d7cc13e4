"""Build glue for the ``.pth`` file that activates the plugin.

Why: DVC has no plugin entry point for stage execution, so the package ships
``dvc_docker_exec.pth`` at the root of site-packages; Python runs its single
``import`` line at start-up and that installs a stdlib-only import hook
(``dvc_docker_exec_hook.py``). A wheel only carries a root-level file if the
build puts it there, and setuptools' editable wheels (PEP 660) write only their
own ``.pth``, so both build paths are extended here. Files placed this way are
listed in RECORD, so ``pip uninstall`` removes them.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "dvc_docker_exec.pth"
HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        # build_lib is the root of the wheel for pure packages.
        self.copy_file(os.path.join(HERE, PTH_NAME), os.path.join(self.build_lib, PTH_NAME))


cmdclass = {"build_py": BuildPyWithPth}

try:
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # setuptools < 64: `pip install -e` uses `develop`
    editable_wheel = None

if editable_wheel is not None:

    class EditableWheelWithPth(editable_wheel):
        # _run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir):
        # everything left in unpacked_wheel is written into the editable wheel.
        def _run_build_commands(self, dist_name, unpacked_wheel, *args, **kwargs):
            result = super()._run_build_commands(dist_name, unpacked_wheel, *args, **kwargs)
            self.copy_file(os.path.join(HERE, PTH_NAME), os.path.join(unpacked_wheel, PTH_NAME))
            return result

    cmdclass["editable_wheel"] = EditableWheelWithPth

setup(cmdclass=cmdclass)
