"""``going_modular.going_modular``: the ZTM chapter's import path, another name for ``going_modular`` itself.

The Zero to Mastery course keeps its package in ``going_modular/going_modular/``, so code written for it
says ``from going_modular.going_modular import data_setup, engine``. Importing this package imports
every module of ``going_modular`` and registers it in ``sys.modules`` under the longer name too, so that

    going_modular.going_modular.engine is going_modular.engine

There is no second copy of any code, and no second module object: a change made through either name
(a patched function, a constant) is seen through the other.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from types import ModuleType

import going_modular

_ALIAS = __name__  # "going_modular.going_modular"


def _module_names() -> list[str]:
    """The names of going_modular's modules (this alias package left out)."""
    alias_child = _ALIAS.rpartition(".")[2]
    return sorted(info.name for info in pkgutil.iter_modules(going_modular.__path__) if info.name != alias_child)


def _register(name: str) -> ModuleType:
    """Import ``going_modular.<name>`` and make it ``going_modular.going_modular.<name>`` as well."""
    module = importlib.import_module(f"{going_modular.__name__}.{name}")
    sys.modules[f"{_ALIAS}.{name}"] = module
    return module


__all__ = _module_names()
globals().update({name: _register(name) for name in __all__})
