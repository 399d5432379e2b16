"""Paths inside installed packages: ``package:MODULE/SUBPATH`` in a study file names a file or
folder of an installed package wherever it is installed (the embedded SST-2 and model)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from autoprumux.core.errors import AutoPruMuxError

PACKAGE_SCHEME = "package:"  # "package:MODULE/SUBPATH": a path inside an installed package


def package_path(text: str) -> Path:
    """The file or folder that ``package:MODULE/SUBPATH`` names inside the installed package
    MODULE, wherever it is installed (``package:autoprumux/embedded/glue``)."""
    module, _, subpath = text.removeprefix(PACKAGE_SCHEME).partition("/")
    try:
        spec = importlib.util.find_spec(module) if module else None
    except (ImportError, ValueError):  # a dotted MODULE whose parent is missing
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise AutoPruMuxError(
            f"{text!r}: no installed package {module!r}; give {PACKAGE_SCHEME}MODULE/SUBPATH "
            "with an installed package, or a path"
        )
    return Path(next(iter(spec.submodule_search_locations))) / subpath
