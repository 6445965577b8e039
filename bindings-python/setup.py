"""Builds the thaw Python package with the project's own CMake build.

`pip install --no-build-isolation ./bindings-python` runs this: it configures
the repository one level up with only the library and the binding enabled,
builds the `thaw_python` target for the interpreter running pip, and packages
the extension with the pure-Python part and the type stubs. Needs what
scripts/setup.sh installs (cmake, g++, the -dev packages, pybind11-dev).
"""
import os
import pathlib
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = pathlib.Path(self.build_temp).resolve() / "cmake"
        subprocess.check_call([
            "cmake", "-S", str(ROOT), "-B", str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DTHAW_BUILD_TESTS=OFF", "-DTHAW_BUILD_EXAMPLES=OFF",
            "-DTHAW_BUILD_BENCHMARKS=OFF", "-DTHAW_BUILD_PYTHON=ON",
            f"-DPython_EXECUTABLE={sys.executable}",
        ])
        subprocess.check_call([
            "cmake", "--build", str(build), "--target", "thaw_python",
            "-j", str(os.cpu_count() or 1),
        ])
        built = next((build / "bindings-python" / "python" / "thaw").glob("_thaw*.so"))
        target = pathlib.Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, target)


setup(
    packages=["thaw"],
    package_data={"thaw": ["__init__.pyi", "py.typed"]},
    ext_modules=[Extension("thaw._thaw", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
