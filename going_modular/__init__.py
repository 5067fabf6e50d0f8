"""going_modular: the reusable code of the Vision Transformer course.

The course's modules (the ZTM chapter's names first), each a notebook's idea:
    data_setup     download pizza_steak_sushi, load images, transforms, dataloaders      (notebook 00)
    model_builder  the paper's ViT: equations 1-4, the hybrid stem, Table 1's presets    (notebooks 01-05)
    engine         the training and testing loops                                        (notebook 05)
    utils          save and load models, seeds, device
    predictions    predict on image files, with pictures                                 (notebook 07)
    train          the command line: python -m going_modular.train                       (notebook 05)
    pretrained     other libraries' weights in the course's ViT; named pretrained weights (notebook 06)
    features       a head trained on a frozen backbone's cached features                 (notebook 06)
    exercises      the check cells of the exercise notebooks

The rest, grouped by purpose:
    figures/       pictures and counts of the model: attention, figure1, figure7, plotting, flops
    training/      what the training command needs beyond the loop: recipe, checkpoint, distributed,
                   validation_split, data (MixUp/CutMix, repeated augmentation, nested subsets, preloading)
    common/        settings (where data and weights live, the reduced run), shapes, download

Imports run one way, never in a cycle: train -> figures/ and training/ -> the course's modules -> common/.

``going_modular.going_modular`` is the ZTM chapter's import path to the same modules.
"""
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
