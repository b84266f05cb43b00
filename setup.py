"""Build hook: the wheel carries the docs the code cites (docs/reproduction.md, docs/ARCHITECTURE.md).

Help lines and errors cite `docs/reproduction.md §...`; a pip-installed copy has no source tree, so the build
copies those files into the package (`gtacli/docs/`) and `gtacli --docs` prints where they are. Everything
else is declared in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED_DOCS = ("reproduction.md", "ARCHITECTURE.md")


class BuildPyWithDocs(build_py):
    def run(self):
        super().run()
        source = Path(__file__).resolve().parent / "docs"
        target = Path(self.build_lib) / "gtacli" / "docs"
        target.mkdir(parents=True, exist_ok=True)
        for name in SHIPPED_DOCS:
            shutil.copyfile(source / name, target / name)


setup(cmdclass={"build_py": BuildPyWithDocs})
