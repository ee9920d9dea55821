"""Names of a package imported from their modules on first use (PEP 562), so that importing a light
part of the package (what a protocol or a table reads) does not load the heavy parts (torch, the
decoder, the face models)."""
from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]) -> tuple[Callable[[str], object], list[str]]:
    """A package's ``__getattr__`` and ``__all__`` for ``exports`` (submodule -> the names it gives).

    Example:
        >>> getattr_, names = lazy_exports("json", {"decoder": ("JSONDecodeError",)})
        >>> names, getattr_("JSONDecodeError").__name__
        (['JSONDecodeError'], 'JSONDecodeError')
    """
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name in module_of:
            return getattr(importlib.import_module(f"{package}.{module_of[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(module_of)
