"""going_modular: the reusable code of the Vision Transformer course.

    data_setup     download pizza_steak_sushi, load images, build dataloaders
    validation_split  the 391-photo validation set: 20 % split photos in neither the 10 % train nor test set
    model_builder  the ViT of the paper (equations 1-4, Table 1)
    pretrained     other libraries' weights in that ViT (torchvision, timm), named pretrained weights
    engine         training and testing loops (the course's loop, then its options and callbacks)
    checkpoint     save a training run after every epoch and resume it
    recipe         the paper's optimiser, weight-decay groups, learning-rate schedule; whole training recipes
    features       train a head on a frozen backbone's features, computed once
    attention      pictures of attention weights
    figure1        the paper's Figure 1, the model overview, with the shape of the data on every arrow
    figure7        the paper's Figure 7: patch-embedding filters, position similarities, attention distance
    flops          FLOPs of a forward pass, split into the parts of equations 1-4 (notebook 04)
    utils          save and load models safely, seeds, device
    predictions    predict on image files, with a picture
    plotting       loss curves, image batches, patch grids, feature maps
    shapes         image and patch-grid sizes (an int or a pair); the image-divisible-by-patch check
    settings       where data and pretrained weights live; whether this is a reduced (test) run
    train          the command line: python -m going_modular.train
    distributed    data-parallel training under torchrun (process group, data shards, summed metrics)
    exercises      the check cells of the exercise notebooks
    publish        the repository's address: pyproject.toml -> Colab badges, setup cells, README
    going_modular  the ZTM chapter's import path, going_modular.going_modular.<module>: the same modules
"""
__version__ = "0.1.0"
