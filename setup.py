"""Builds the optional C accelerators: the read path's record decoder (shardline.storage._speedups) and the put
path's staging table (shardline.storage._stagetable).

Everything else is in pyproject.toml. Without a C compiler the build of the extensions fails softly (``optional``)
and shardline runs on their pure-Python references, which give the same results more slowly.
"""

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror=implicit-function-declaration"]

setup(
    ext_modules=[
        Extension(
            f"shardline.storage.{name}",
            sources=[f"src/shardline/storage/{name}.c"],
            extra_compile_args=FLAGS,
            optional=True,
        )
        for name in ("_speedups", "_stagetable")
    ]
)
