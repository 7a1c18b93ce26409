"""Build ``llm2vec_gen._C`` from ``csrc/*.cpp`` and install ``kernels/`` as ``llm2vec_gen.kernels``.

Install with ``pip install --no-build-isolation .`` so the build uses the installed torch.
The extension is optional: without a compiler the package installs and runs on the torch backend.
"""

import glob

from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

ext = CppExtension(
    "llm2vec_gen._C",
    sorted(glob.glob("csrc/*.cpp")),
    extra_compile_args={"cxx": ["-O3", "-fopenmp", "-std=c++17"]},
    extra_link_args=["-fopenmp"],
    optional=True,
)

setup(
    packages=[*find_packages(include=["llm2vec_gen", "llm2vec_gen.*"]), "llm2vec_gen.kernels"],
    package_dir={"llm2vec_gen.kernels": "kernels"},
    package_data={"llm2vec_gen": ["data/*"]},
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
