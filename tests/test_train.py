"""python -m going_modular.train end to end on a tiny generated dataset, and helper_functions."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import helper_functions
from going_modular import attention, data_setup, plotting, predictions, train, utils


def make_colour_dataset(root: Path, per_class: int = 4) -> Path:
    """train/ and test/ with one solid colour per class: red, green."""
    for split in ("train", "test"):
        for name, colour in (("red", (220, 20, 20)), ("green", (20, 220, 20))):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (40 + i, 36), colour).save(folder / f"{i}.jpg")
    return root


def test_train_command_line_end_to_end(tmp_path):
    data_dir = make_colour_dataset(tmp_path / "colours")
    output_dir = tmp_path / "out"
    results = train.main([
        "--model", "vit_ti_16", "--epochs", "2", "--image-size", "32", "--batch-size", "4",
        "--data-dir", str(data_dir), "--output-dir", str(output_dir), "--num-workers", "0",
        "--model-name", "tiny", "--seed", "7",
    ])
    saved = json.loads((output_dir / "tiny_results.json").read_text())
    assert saved == results
    assert len(saved["metrics"]["train_loss"]) == 2
    assert saved["class_names"] == ["green", "red"]
    assert saved["num_train_images"] == 8 and saved["seed"] == 7 and saved["device"] == "cpu"
    assert saved["config"]["model"] == "vit_ti_16" and saved["wall_time_seconds"] > 0
    assert (output_dir / "tiny_loss_curves.png").stat().st_size > 1000
    model = utils.load_model(train.model_builder.create_vit("vit_ti_16", num_classes=2, img_size=32),
                             output_dir / "tiny.pth")
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 2)


def test_train_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train.main(["--data-dir", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path)])


def test_train_help_documents_every_flag():
    completed = subprocess.run([sys.executable, "-m", "going_modular.train", "--help"],
                               capture_output=True, text=True, check=True)
    for flag in ("--model", "--epochs", "--batch-size", "--lr", "--image-size", "--data-dir", "--output-dir"):
        assert flag in completed.stdout
    parser_actions = train.parse_args([]).__dict__
    assert all(f"--{name.replace('_', '-')}" in completed.stdout for name in parser_actions)


@pytest.mark.parametrize("flag", ["--epochs", "--patch-size", "--num-transformer-layers"])
def test_train_rejects_non_positive_numbers(capsys, flag):
    with pytest.raises(SystemExit):
        train.parse_args([flag, "0"])
    assert f"{flag} must be at least 1" in capsys.readouterr().err


def test_helper_functions_re_export_the_package_implementations():
    assert helper_functions.set_seeds is utils.set_seeds
    assert helper_functions.download_data is data_setup.download_data
    assert helper_functions.plot_loss_curves is plotting.plot_loss_curves
    assert helper_functions.pred_and_plot_image is predictions.pred_and_plot_image
    for name in ("plot_image_batch", "plot_patch_grid", "plot_feature_maps"):
        assert getattr(helper_functions, name) is getattr(plotting, name)
    assert helper_functions.plot_attention_heads is attention.plot_attention_heads


def test_helper_functions_course_helpers(tmp_path, capsys):
    assert helper_functions.accuracy_fn(torch.tensor([1, 0, 1, 1]), torch.tensor([1, 1, 1, 1])) == 75.0
    with pytest.raises(ValueError, match="equal size"):
        helper_functions.accuracy_fn(torch.tensor([1]), torch.tensor([1, 0]))
    assert helper_functions.print_train_time(1.0, 3.5, "cpu") == 2.5
    helper_functions.walk_through_dir(make_colour_dataset(tmp_path / "d", per_class=2))
    assert "There are 0 directories and 2 images in" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="download_data"):
        helper_functions.walk_through_dir(tmp_path / "missing")


def test_plot_loss_curves_saves_png_and_rejects_other_dicts(tmp_path):
    import matplotlib.pyplot as plt

    history = {"train_loss": [1.0, 0.5], "train_acc": [0.4, 0.8], "test_loss": [1.1, 0.7], "test_acc": [0.3, 0.6]}
    figure = plotting.plot_loss_curves(history, tmp_path / "sub" / "curves.png", title="cpu, 2 epochs")
    plt.close(figure)
    assert (tmp_path / "sub" / "curves.png").stat().st_size > 1000
    with pytest.raises(KeyError, match="engine.train"):
        plotting.plot_loss_curves({"loss": [1.0]})


def test_train_command_line_with_the_full_recipe(tmp_path):
    data_dir = make_colour_dataset(tmp_path / "colours")
    results = train.main([
        "--model", "vit_ti_16", "--epochs", "2", "--image-size", "32", "--patch-size", "8", "--batch-size", "4",
        "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "out"), "--num-workers", "0",
        "--augment", "trivialaugment", "--warmup-epochs", "1", "--lr-decay", "cosine", "--label-smoothing", "0.1",
        "--drop-path-rate", "0.1", "--max-grad-norm", "1.0", "--accumulation-steps", "2", "--pool", "mean",
        "--num-transformer-layers", "3",
    ])
    assert results["config"]["augment"] == "trivialaugment" and results["config"]["patch_size"] == 8
    model = train.model_builder.create_vit("vit_ti_16", num_classes=2, img_size=32, patch_size=8, pool="mean",
                                           num_transformer_layers=3)
    utils.load_model(model, tmp_path / "out" / "vit_ti_16.pth")
    assert model.pool == "mean" and model.patch_embedding.patcher.kernel_size == (8, 8)
    assert results["world_size"] == 1
    assert all(loss == loss for loss in results["metrics"]["train_loss"])  # finite, not NaN
