"""Builds the optional C accelerator of the read path (shardline.storage._speedups).

Everything else is in pyproject.toml. Without a C compiler the build of the extension fails softly (``optional``)
and shardline runs on its pure-Python decoder, which gives the same results more slowly.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "shardline.storage._speedups",
            sources=["src/shardline/storage/_speedups.c"],
            extra_compile_args=[
                "-O2",
                "-Wall",
                "-Wextra",
                "-Wno-unused-parameter",
                "-Werror=implicit-function-declaration",
            ],
            optional=True,
        )
    ]
)
