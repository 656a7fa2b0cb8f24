"""Build hook: grayctl's Ansible content and shipped examples travel inside the package.

A wheel or a non-editable install carries playbooks/, roles/, inventories/, topologies/,
experiments/, sweeps/ and ansible.cfg as ``grayctl/_content`` (grayctl.paths finds them there), so
grayctl runs with no checkout present. An editable install keeps reading them from the checkout.
Everything else is declared in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# grayctl.paths.CONTENT names the same entries (tests/unit/test_packaging.py keeps them equal)
CONTENT = ("ansible.cfg", "requirements.yml", "playbooks", "roles", "inventories", "topologies",
           "experiments", "sweeps", "awx")


class BuildPyWithContent(build_py):
    def run(self) -> None:
        if not getattr(self, "editable_mode", False):
            # a module moved or deleted in the tree must not live on in build/lib's copy
            shutil.rmtree(Path(self.build_lib) / "grayctl", ignore_errors=True)
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "grayctl" / "_content"
        shutil.rmtree(dest, ignore_errors=True)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".molecule", ".ansible")
        for name in CONTENT:
            src = ROOT / name
            if src.is_dir():
                # symlinks=False: a link between roles becomes a copy, so each role stands alone
                shutil.copytree(src, dest / name, symlinks=False, ignore=ignore)
            else:
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)


setup(cmdclass={"build_py": BuildPyWithContent})
