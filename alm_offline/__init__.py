"""Aligned Latent Models (ALM), online and offline.

The wheel installs ``datasets/`` and ``configs/`` of the repository as ``alm_offline.datasets``
and ``alm_offline.configs`` (setuptools ``package-dir``). When this package is imported from a
checkout instead, which happens with a plain ``pip install .`` whenever the repository root is
first on ``sys.path`` (Python started in the root, or a Ray worker that puts the driver's
directory there), ``alm_offline/`` has no such subfolders. ``_CheckoutFinder`` then maps the two
names to the sibling folders, as the editable install's import hook does. An installed package
has the subfolders and installs no finder.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds ``alm_offline.<sub>`` in ``<checkout>/<sub>/`` for this checkout's package only."""

    def __init__(self, package_dir: Path, folders: dict[str, Path]) -> None:
        self.package_dir = package_dir
        self.folders = folders

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        folder = self.folders.get(fullname)
        if folder is None or not any(Path(p).resolve() == self.package_dir for p in path or ()):
            return None
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


def _install_checkout_finder() -> None:
    package_dir = Path(__file__).resolve().parent
    folders = {
        f"{__name__}.{sub}": package_dir.parent / sub
        for sub in ("datasets", "configs")
        if not (package_dir / sub).exists() and (package_dir.parent / sub / "__init__.py").is_file()
    }
    installed = any(
        isinstance(f, _CheckoutFinder) and f.package_dir == package_dir for f in sys.meta_path
    )
    if folders and not installed:
        sys.meta_path.insert(0, _CheckoutFinder(package_dir, folders))


_install_checkout_finder()
