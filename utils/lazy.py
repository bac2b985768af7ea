"""Names of a package imported on first use (PEP 562), so that importing the package stays cheap
(config validation reads registries without importing torch and timm)."""

import importlib


def lazy_getattr(package, table):
    """A module-level `__getattr__` for `package`: name -> getattr(package.<table[name]>, name)."""

    def __getattr__(name):
        if name in table:
            return getattr(importlib.import_module(f".{table[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
