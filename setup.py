"""Installs the repository as one distribution whose code imports as ``peterrec.*``.

The repository root is the ``peterrec`` package (``package_dir={"peterrec": "."}``), and
its rooms (``components/``, ``trainer/``, ``serving/``, ``pipeline/``) are its
subpackages, so the same tree imports as ``peterrec.trainer`` installed, in an editable
install and under Bazel (whose workspace is named ``peterrec``).
"""

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOMS = ("components", "trainer", "serving", "pipeline")
# Modules at the repository root that belong to the package (setup.py does not).
ROOT_MODULES = ("__init__", "cli", "_keras_env")


class _BuildPy(build_py):
    """Keeps repository-root scripts such as setup.py out of the installed package."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        if package == "peterrec":
            modules = [m for m in modules if m[1] in ROOT_MODULES]
        return modules


def _packages():
    packages = ["peterrec"]
    for room in ROOMS:
        packages.append(f"peterrec.{room}")
        packages.extend(f"peterrec.{room}.{sub}" for sub in find_packages(room))
    return packages


setup(
    name="peterrec",
    version="0.1.0",
    description="Pretrain once, fine-tune many: PeterRec model patches on TFX.",
    python_requires=">=3.9,<3.11",
    packages=_packages(),
    package_dir={"peterrec": "."},
    package_data={"peterrec.serving": ["*.json"], "peterrec.pipeline": ["*.json"]},
    cmdclass={"build_py": _BuildPy},
    # Exact versions live in requirements/lock.txt; these are the direct needs.
    install_requires=[
        "tfx[kfp]==1.16.0",
        "tensorflow==2.16.2",
        "tf-keras==2.16.0",
        "apache-beam==2.59.0",
        "tensorflow-recommenders==0.7.7",
        "tensorflow-serving-api==2.16.1",
        "pandas",
        "numpy<2",
    ],
    entry_points={"console_scripts": ["peterrec=peterrec.cli:main"]},
)
