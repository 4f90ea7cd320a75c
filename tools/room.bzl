"""The Bazel library of one room of the `peterrec` package (components, trainer, serving, pipeline)."""

def peterrec_room(name, deps = []):
    """A py_library of every module (and JSON file) below the calling folder.

    The glob takes in new modules and sub-packages without editing the BUILD file. `deps`
    lists the rooms this one may import (the package itself is always a dependency).
    """
    native.py_library(
        name = name,
        srcs = native.glob(["**/*.py"]),
        data = native.glob(["**/*.json"]),
        srcs_version = "PY3",
        deps = ["//:peterrec"] + deps,
    )
