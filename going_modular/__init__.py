"""going_modular: the reusable code of the Vision Transformer course (docs/guides/package.md maps every module).

The course's modules (the ZTM chapter's names: data_setup, model_builder, engine, utils, predictions, train; then
pretrained, features, exercises) sit at the top; figures/, training/ and common/ group the rest by purpose. Imports
run one way: train -> figures/ and training/ -> the course's modules -> common/. ``going_modular.going_modular`` is
the ZTM chapter's import path to the same modules."""
import importlib

__version__ = "0.1.0"

# Modules that moved into a subpackage stay importable as ``from going_modular import attention``.
_MOVED = {
    **{name: "figures" for name in ("attention", "figure1", "figure7", "plotting", "flops")},
    **{name: "training" for name in ("checkpoint", "distributed", "recipe", "validation_split")},
    **{name: "common" for name in ("settings", "shapes")},
}


def __getattr__(name: str) -> object:
    if name in _MOVED:
        return importlib.import_module(f"{__name__}.{_MOVED[name]}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
