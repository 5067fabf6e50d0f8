"""The ZTM chapter's import path, ``from going_modular.going_modular import data_setup, engine``: ``going_modular``.

Every module of ``going_modular``, those of its subpackages too, is registered under both names, so that
``going_modular.going_modular.engine is going_modular.engine``: one module object, never a second copy."""
import importlib
import pkgutil
import sys

import going_modular

__all__: list[str] = []


def __getattr__(name: str) -> object:  # a moved module's old name (``attention``) resolves as in going_modular
    return getattr(going_modular, name)


# deploy/ needs the deploy extra (ONNX Runtime, Gradio) and is no module of the ZTM chapter: not imported here.
for _info in pkgutil.walk_packages(going_modular.__path__, prefix="going_modular."):
    _name = _info.name.removeprefix("going_modular.")  # "engine", "figures", "figures.attention", ...
    if _name.split(".")[0] not in ("going_modular", "deploy"):  # this package, and the optional one
        sys.modules[f"{__name__}.{_name}"] = _module = importlib.import_module(_info.name)
        if "." not in _name:
            globals()[_name] = _module
            __all__.append(_name)
