"""Build hook: grayctl's Ansible content and shipped examples travel inside the package.

A wheel or a non-editable install carries the collection grayctl.lab (galaxy.yml, meta/, plugins/,
roles/, playbooks/), inventories/, topologies/, experiments/, sweeps/, awx/, grafana/ and ansible.cfg as
``grayctl/_content/ansible_collections/grayctl/lab`` (grayctl.paths finds them there): the content
root is itself where Ansible looks for the collection, so ``grayctl/_content`` is its collections
path and no link is needed. grayctl runs with no checkout present. An editable install keeps
reading them from the checkout. Everything else is declared in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# grayctl.paths.CONTENT names the same entries (tests/unit/test_packaging.py keeps them equal)
CONTENT = ("ansible.cfg", "requirements.yml", "galaxy.yml", "meta", "plugins", "playbooks", "roles", "inventories",
           "topologies", "experiments", "sweeps", "awx", "grafana")
# grayctl.paths.COLLECTION: the content root is <collections path>/ansible_collections/grayctl/lab
COLLECTION = ("ansible_collections", "grayctl", "lab")


class BuildPyWithContent(build_py):
    def run(self) -> None:
        if not getattr(self, "editable_mode", False):
            # a module moved or deleted in the tree must not live on in build/lib's copy
            shutil.rmtree(Path(self.build_lib) / "grayctl", ignore_errors=True)
        super().run()
        if getattr(self, "editable_mode", False):
            return
        shutil.rmtree(Path(self.build_lib) / "grayctl" / "_content", ignore_errors=True)
        dest = Path(self.build_lib, "grayctl", "_content", *COLLECTION)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".molecule", ".ansible")
        for name in CONTENT:
            src = ROOT / name
            if src.is_dir():
                # symlinks=False: a link inside the content becomes a copy, so the package holds no links
                shutil.copytree(src, dest / name, symlinks=False, ignore=ignore)
            else:
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)


setup(cmdclass={"build_py": BuildPyWithContent})
