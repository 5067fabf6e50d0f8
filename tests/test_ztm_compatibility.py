"""Code written for the ZTM "PyTorch Paper Replicating" chapter runs unchanged against this repository.

The chapter imports ``from going_modular.going_modular import ...`` and calls the course's functions with
keyword arguments; ``test_the_ztm_chapter_runs_unchanged`` makes those calls, as the chapter writes
them, on generated photos and a small ViT.
"""
from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import requests
import torch
from PIL import Image
from torch import nn
from torchvision import transforms

import going_modular
import helper_functions
from going_modular import predictions
from going_modular.common import settings

ROOT = Path(__file__).resolve().parents[1]
ZTM_DATA_URL = "https://github.com/mrdbourke/pytorch-deep-learning/raw/main/data/pizza_steak_sushi.zip"
COLOURS = {"pizza": (210, 60, 30), "steak": (120, 60, 40), "sushi": (240, 240, 230)}


def _make_pizza_steak_sushi(root: Path, train_per_class: int = 4, test_per_class: int = 2) -> Path:
    """pizza_steak_sushi laid out as the ZTM zip unpacks it: train/ and test/, one folder per class."""
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (48 + 4 * i, 40), colour).save(folder / f"{i}.jpg")
    return root


# ----------------------------------------------------------------------------- going_modular.going_modular


def test_the_ztm_import_path_names_the_same_modules():
    import going_modular.going_modular as ztm

    names = [info.name for info in pkgutil.iter_modules(going_modular.__path__)
             if info.name not in ("going_modular", "deploy")]  # deploy: the optional extra's, not the chapter's
    assert {"data_setup", "engine", "model_builder", "predictions", "train", "utils"} <= set(names)
    for name in names:
        module = importlib.import_module(f"going_modular.{name}")
        assert getattr(ztm, name) is module
        assert sys.modules[f"going_modular.going_modular.{name}"] is module
        assert importlib.import_module(f"going_modular.going_modular.{name}") is module


def test_the_ztm_import_path_gives_the_same_modules_of_subpackages_not_second_copies():
    import going_modular.going_modular as ztm

    names = [info.name.removeprefix("going_modular.") for info in pkgutil.walk_packages(going_modular.__path__,
                                                                                         "going_modular.")]
    assert {"figures.attention", "training.checkpoint", "common.settings"} <= set(names)
    for name in names:
        if name.split(".")[0] not in ("going_modular", "deploy"):
            module = importlib.import_module(f"going_modular.{name}")
            assert importlib.import_module(f"going_modular.going_modular.{name}") is module, name
    # A moved module's old name resolves as it does from going_modular.
    from going_modular.going_modular import attention

    assert attention is going_modular.figures.attention is ztm.attention


def test_the_ztm_import_path_works_in_a_fresh_interpreter():
    code = (
        "from going_modular.going_modular import data_setup, engine\n"
        "from going_modular.going_modular.predictions import pred_and_plot_image\n"
        "import going_modular.engine, going_modular.predictions\n"
        "assert engine is going_modular.engine\n"
        "assert pred_and_plot_image is going_modular.predictions.pred_and_plot_image\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr


# ------------------------------------------------------------------------ helper_functions.pred_and_plot_image


def test_helper_pred_and_plot_image_takes_the_ztm_helper_order_and_delegates(monkeypatch):
    calls = []
    monkeypatch.setattr(predictions, "pred_and_plot_image", lambda *args, **kwargs: calls.append((args, kwargs)))
    model, transform = nn.Identity(), transforms.ToTensor()
    helper_functions.pred_and_plot_image(model, "photo.jpg", ["pizza"], transform, "cpu")
    assert calls == [((model, ["pizza"], "photo.jpg"),
                      {"image_size": (224, 224), "transform": transform, "device": "cpu"})]


def test_helper_pred_and_plot_image_says_which_order_it_takes(tmp_path):
    with pytest.raises(TypeError, match=r"takes \(model, image_path, class_names\).*going_modular\.predictions"):
        helper_functions.pred_and_plot_image(nn.Identity(), ["pizza", "steak"], tmp_path / "photo.jpg")
    with pytest.raises(ValueError, match="needs class_names"):
        helper_functions.pred_and_plot_image(nn.Identity(), tmp_path / "photo.jpg")


# ------------------------------------------------------------------------------------------ the chapter


def test_the_ztm_chapter_runs_unchanged(tmp_path, monkeypatch):
    """The chapter's calls, in its order and with its keyword names; only the ViT's sizes are smaller."""
    monkeypatch.setenv(settings.DATA_DIR_ENV, str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    _make_pizza_steak_sushi(tmp_path / "data" / "pizza_steak_sushi")  # already there, so nothing is downloaded

    from going_modular.going_modular import data_setup, engine, utils
    from going_modular.going_modular.model_builder import (
        MLPBlock, MultiheadSelfAttentionBlock, PatchEmbedding, TransformerEncoderBlock, ViT,
    )
    from going_modular.going_modular.predictions import pred_and_plot_image
    from helper_functions import download_data, plot_loss_curves, set_seeds

    # 1. Get data
    image_path = download_data(source=ZTM_DATA_URL, destination="pizza_steak_sushi")
    train_dir, test_dir = image_path / "train", image_path / "test"

    # 2. Create Datasets and DataLoaders
    IMG_SIZE = 224
    manual_transforms = transforms.Compose([transforms.Resize((IMG_SIZE, IMG_SIZE)), transforms.ToTensor()])
    BATCH_SIZE = 32
    train_dataloader, test_dataloader, class_names = data_setup.create_dataloaders(
        train_dir=train_dir, test_dir=test_dir, transform=manual_transforms, batch_size=BATCH_SIZE
    )
    assert class_names == ["pizza", "steak", "sushi"]
    image_batch, label_batch = next(iter(train_dataloader))
    image, label = image_batch[0], label_batch[0]
    assert image.shape == (3, 224, 224) and class_names[label] in COLOURS

    # 4. Equation 1: patch embedding, class token, position embedding
    patch_size = 16
    set_seeds()
    patchify = PatchEmbedding(in_channels=3, patch_size=16, embedding_dim=768)
    patch_embedded_image = patchify(image.unsqueeze(0))
    assert patch_embedded_image.shape == (1, 196, 768)
    batch_size, embedding_dimension = patch_embedded_image.shape[0], patch_embedded_image.shape[-1]
    class_token = nn.Parameter(torch.ones(batch_size, 1, embedding_dimension), requires_grad=True)
    patch_embedded_image_with_class_embedding = torch.cat((class_token, patch_embedded_image), dim=1)
    number_of_patches = int((IMG_SIZE * IMG_SIZE) / patch_size**2)
    position_embedding = nn.Parameter(torch.ones(1, number_of_patches + 1, embedding_dimension), requires_grad=True)
    patch_and_position_embedding = patch_embedded_image_with_class_embedding + position_embedding
    assert patch_and_position_embedding.shape == (1, 197, 768)

    # 5. Equation 2: multi-head attention; 6. Equation 3: MLP; 7. the Transformer encoder block
    multihead_self_attention_block = MultiheadSelfAttentionBlock(embedding_dim=768, num_heads=12, attn_dropout=0)
    patched_image_through_msa_block = multihead_self_attention_block(patch_and_position_embedding)
    assert patched_image_through_msa_block.shape == (1, 197, 768)
    mlp_block = MLPBlock(embedding_dim=768, mlp_size=3072, dropout=0.1)
    assert mlp_block(patched_image_through_msa_block).shape == (1, 197, 768)
    transformer_encoder_block = TransformerEncoderBlock(embedding_dim=768, num_heads=12, mlp_size=3072,
                                                        mlp_dropout=0.1, attn_dropout=0)
    assert transformer_encoder_block(patch_and_position_embedding).shape == (1, 197, 768)

    # 8. Putting it all together: the chapter's ViT (counted on the meta device: 85,800,963 parameters as in
    # its torchinfo summary), then the same class with small sizes, so that training takes seconds.
    with torch.device("meta"):
        vit = ViT(num_classes=len(class_names))
    assert sum(parameter.numel() for parameter in vit.parameters()) == 85_800_963
    set_seeds()
    vit = ViT(img_size=224, in_channels=3, patch_size=32, num_transformer_layers=1, embedding_dim=32, mlp_size=64,
              num_heads=2, attn_dropout=0, mlp_dropout=0.1, embedding_dropout=0.1, num_classes=len(class_names))
    assert vit(image_batch).shape == (len(image_batch), 3)

    # 9. Train
    device = "cpu"
    optimizer = torch.optim.Adam(params=vit.parameters(), lr=3e-3, betas=(0.9, 0.999), weight_decay=0.3)
    loss_fn = torch.nn.CrossEntropyLoss()
    set_seeds()
    results = engine.train(model=vit, train_dataloader=train_dataloader, test_dataloader=test_dataloader,
                           optimizer=optimizer, loss_fn=loss_fn, epochs=2, device=device)
    assert {key: len(values) for key, values in results.items()} == {
        "train_loss": 2, "train_acc": 2, "test_loss": 2, "test_acc": 2}
    plot_loss_curves(results)
    assert plt.gcf().axes, "plot_loss_curves drew nothing"

    # 10. Save the model
    utils.save_model(model=vit, target_dir="models", model_name="08_vit_pizza_steak_sushi.pth")
    pretrained_vit_model_size = Path("models/08_vit_pizza_steak_sushi.pth").stat().st_size // (1024 * 1024)
    assert pretrained_vit_model_size == 0  # a small ViT: well under a megabyte

    # 11. Predict on a custom image, with the package's function and with ZTM's helper (its own argument order)
    custom_image_path = tmp_path / "data" / "04-pizza-dad.jpeg"
    Image.new("RGB", (64, 48), COLOURS["pizza"]).save(custom_image_path)
    package_result = pred_and_plot_image(model=vit, image_path=custom_image_path, class_names=class_names)
    assert plt.gca().get_title() == f"Pred: {package_result[0]} | Prob: {package_result[1]:.3f}"
    assert helper_functions.pred_and_plot_image(vit, custom_image_path, class_names) == package_result


def test_the_chapters_download_fails_offline_with_a_clear_connection_error(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.DATA_DIR_ENV, str(tmp_path / "data"))

    def offline(*args, **kwargs):
        raise requests.ConnectionError("Failed to establish a new connection")

    monkeypatch.setattr(requests, "get", offline)
    with pytest.raises(ConnectionError, match="Try again when online"):
        helper_functions.download_data(source=ZTM_DATA_URL, destination="pizza_steak_sushi")
    assert list((tmp_path / "data").iterdir()) == []  # nothing half-downloaded is left behind
