"""python -m going_modular.train end to end on a tiny generated dataset, and helper_functions."""
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest
import requests
import torch
import torchvision
from PIL import Image

import helper_functions
from going_modular import data_setup, train, utils
from going_modular.common import settings
from going_modular.figures import attention, plotting
from going_modular.training import recipe


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
        "--recipe", "ztm", "--model", "vit_ti_16", "--epochs", "2", "--image-size", "32", "--batch-size", "4",
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


def _user_error(capsys, argv) -> str:
    """Run the command line, expect a user error, return its one line."""
    with pytest.raises(SystemExit) as caught:
        train.main(argv)
    assert caught.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_train_missing_data_dir_is_a_one_line_error(tmp_path, capsys):
    line = _user_error(capsys, ["--data-dir", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path)])
    assert "nowhere does not exist" in line and "train/ and test/" in line


def test_train_offline_without_the_dataset_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise requests.ConnectionError("Failed to resolve 'github.com' (simulated)")

    monkeypatch.setenv(settings.DATA_DIR_ENV, str(tmp_path / "empty"))
    monkeypatch.setattr(requests, "get", offline)
    line = _user_error(capsys, ["--output-dir", str(tmp_path / "out")])
    assert "Could not download" in line and "with a browser" in line


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--max-batches", "0"], "--max-batches must be at least 1, got 0"),
    (["--max-batches", "-3"], "--max-batches must be at least 1, got -3"),
    (["--num-transformer-layers", "0"], "--num-transformer-layers must be at least 1"),
    (["--lr", "0"], "--lr must be positive, got 0.0"),
    (["--lr", "nan"], "--lr must be positive, got nan"),
    (["--label-smoothing", "1"], "--label-smoothing must be at least 0 and below 1"),
    (["--drop-path-rate", "-0.1"], "--drop-path-rate must be at least 0 and below 1"),
    (["--max-grad-norm", "-1"], "--max-grad-norm must be at least 0"),
    (["--epochs", "10", "--warmup-epochs", "11"], "--warmup-epochs must be between 0 and --epochs (10), got 11"),
    (["--dropout", "1"], "--dropout must be at least 0 and below 1"),
    (["--randaugment-magnitude", "31"], "--randaugment-magnitude must be between 0 and 30"),
    (["--ema-decay", "1"], "--ema-decay must be at least 0 (off) and below 1"),
    (["--repeated-augmentation", "0"], "--repeated-augmentation must be at least 1, got 0"),
    (["--stem-channels", "8", "0"], "--stem-channels must all be at least 1"),
    (["--val-dir", "auto", "--data-dir", "."], "--val-dir auto is the validation split of the course's"),
    (["--device", "toaster"], "--device 'toaster' is not a device PyTorch knows"),
    (["--epochs", "many"], "argument --epochs: invalid int value: 'many'"),
    (["--recipe", "imagenet"], "argument --recipe: invalid choice: 'imagenet'"),
])
def test_train_rejects_bad_flags_in_one_line(capsys, flags, message):
    assert message in _user_error(capsys, flags)


# Settings that torch, torchvision or the model refuse themselves: their ValueError, in one line.
@pytest.mark.parametrize("flags, message", [
    (["--patch-size", "0"], "patch_size must be positive, got 0"),
    (["--batch-size", "0"], "batch_size should be a positive integer value, but got batch_size=0"),
    (["--weight-decay", "-0.1"], "Invalid weight_decay value: -0.1"),
    (["--num-workers", "-1"], "num_workers option should be non-negative"),
    (["--mixup-alpha", "-1"], "neither negative), got -1.0"),
    (["--image-size", "96", "--stem-channels", "8", "16", "--patch-size", "16"],
     "divisible by the patch size 64, got 96 x 96"),  # the stem's stride 4 x the patch size 16
    (["--recipe", "ztm", "--image-size", "100"], "divisible by the patch size 16, got 100 x 100"),
    (["--recipe", "ztm", "--image-size", "32", "--patch-size", "5"], "e.g. to 30 x 30"),
    (["--image-size", "100"], "divisible by the patch size 16, got 100 x 100"),  # the stem's stride 16 x 1
])
def test_train_reports_what_torch_and_the_model_refuse_in_one_line(tmp_path, capsys, flags, message):
    tiny_run = ["--data-dir", str(make_colour_dataset(tmp_path / "c")), "--output-dir", str(tmp_path / "o"),
                "--num-workers", "0", "--batch-size", "4"]
    assert message in _user_error(capsys, [*tiny_run, *flags])  # the flags under test come last, and win


def test_train_command_line_prints_one_line_for_a_user_error(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "going_modular.train", "--recipe", "ztm", "--image-size", "100",
                                "--data-dir", str(make_colour_dataset(tmp_path / "c")), "--num-workers", "0"],
                               capture_output=True, text=True)
    with pytest.raises(ValueError) as refused:  # the model's own message reaches the user, as it is
        train.model_builder.create_vit("vit_b_16", num_classes=2, img_size=100)
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [f"error: {refused.value}"]


def test_an_unexpected_error_keeps_its_traceback(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not a user error")

    monkeypatch.setattr(train.engine, "train", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        train.main(["--data-dir", str(make_colour_dataset(tmp_path / "c")), "--output-dir", str(tmp_path / "o"),
                    "--image-size", "32", "--batch-size", "4", "--num-workers", "0"])


def test_train_help_documents_every_flag():
    completed = subprocess.run([sys.executable, "-m", "going_modular.train", "--help"],
                               capture_output=True, text=True, check=True)
    for flag in ("--model", "--epochs", "--batch-size", "--lr", "--image-size", "--data-dir", "--output-dir"):
        assert flag in completed.stdout
    parser_actions = train.parse_args([]).__dict__
    assert all(f"--{name.replace('_', '-')}" in completed.stdout for name in parser_actions)


def test_helper_functions_re_export_the_package_implementations():
    assert helper_functions.set_seeds is utils.set_seeds
    assert helper_functions.download_data is data_setup.download_data
    assert helper_functions.plot_loss_curves is plotting.plot_loss_curves
    # pred_and_plot_image keeps the ZTM helper's argument order: tests/test_ztm_compatibility.py checks it delegates.
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


def test_train_command_line_with_the_full_recipe_reaches_the_training_loop(tmp_path, monkeypatch):
    data_dir = make_colour_dataset(tmp_path / "colours", per_class=6)  # 12 training images
    clipped_norms = []
    real_clip = torch.nn.utils.clip_grad_norm_

    def clip_and_measure(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        total_norm = real_clip(parameters, max_norm, *args, **kwargs)
        clipped_norms.append(float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(p.grad) for p in parameters if p.grad is not None]))))
        return total_norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_and_measure)
    peak_lr, epochs = 0.01, 3
    results = train.main([
        "--recipe", "ztm", "--model", "vit_ti_16", "--epochs", str(epochs), "--image-size", "32", "--patch-size", "8",
        "--batch-size", "2",
        "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "out"), "--num-workers", "0", "--lr", str(peak_lr),
        "--augment", "trivialaugment", "--warmup-epochs", "1", "--lr-decay", "cosine", "--label-smoothing", "0.1",
        "--drop-path-rate", "0.1", "--max-grad-norm", "0.5", "--accumulation-steps", "2", "--pool", "mean",
        "--num-transformer-layers", "3",
    ])
    # 6 batches of 2 with accumulation 2: 3 optimisation steps per epoch, 1 epoch (3 steps) of warmup, then
    # cosine decay over the other 6 steps, one learning rate per step.
    warmup, decay = 3, 6
    expected_lrs = [peak_lr * (k + 1) / (warmup + 1) for k in range(warmup)]
    expected_lrs += [peak_lr * (1 + math.cos(math.pi * k / decay)) / 2 for k in range(decay)]
    assert results["steps"]["lr"] == pytest.approx(expected_lrs)
    assert len(clipped_norms) == len(results["steps"]["grad_norm"]) == warmup + decay  # clipping at every step
    assert all(norm <= 0.5 * (1 + 1e-5) for norm in clipped_norms)
    assert max(results["steps"]["grad_norm"]) > 0.5  # ... and it had something to clip
    model = train.model_builder.create_vit("vit_ti_16", num_classes=2, img_size=32, patch_size=8, pool="mean",
                                           num_transformer_layers=3)
    utils.load_model(model, tmp_path / "out" / "vit_ti_16.pth")
    assert results["world_size"] == 1
    assert all(math.isfinite(loss) for loss in results["metrics"]["train_loss"] + results["steps"]["loss"])


def test_drop_last_leaves_out_the_incomplete_batch(tmp_path):
    data_dir = make_colour_dataset(tmp_path / "colours", per_class=4)  # 8 training images: batches of 3, 3 and 2
    runs = {}
    for drop_last in (False, True):
        runs[drop_last] = train.main([
            "--recipe", "ztm", "--model", "vit_ti_16", "--epochs", "2", "--image-size", "32", "--patch-size", "16",
            "--batch-size", "3", "--num-workers", "0",
            "--data-dir", str(data_dir), "--output-dir", str(tmp_path / str(drop_last)), "--num-transformer-layers", "1",
        ] + (["--drop-last"] if drop_last else []))
    assert len(runs[False]["steps"]["lr"]) == 2 * 3
    assert len(runs[True]["steps"]["lr"]) == 2 * 2


def _training_batches(tmp_path, monkeypatch, *flags: str) -> tuple[dict, list[tuple[torch.Tensor, torch.Tensor]]]:
    """One epoch of a tiny ztm run (8 photos, batches of 4) with these flags: its results and the batches it trained on."""
    data_dir = make_colour_dataset(tmp_path / "colours", per_class=4)
    batches = []
    real_train_step = train.engine.train_step

    def recording_train_step(model, dataloader, *args, **kwargs):
        batches.extend(dataloader)
        return real_train_step(model, dataloader, *args, **kwargs)

    monkeypatch.setattr(train.engine, "train_step", recording_train_step)
    results = train.main([
        "--recipe", "ztm", "--model", "vit_ti_16", "--epochs", "1", "--image-size", "32", "--patch-size", "16",
        "--batch-size", "4", "--num-workers", "0", "--num-transformer-layers", "1", *flags,
        "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "out"),
    ])
    return results, batches


def test_mixup_and_cutmix_reach_the_training_batches(tmp_path, monkeypatch):
    results, batches = _training_batches(tmp_path, monkeypatch, "--mixup-alpha", "0.8", "--cutmix-alpha", "1.0")
    seen_labels = [labels for _, labels in batches]
    assert seen_labels and all(labels.shape == (4, 2) for labels in seen_labels)  # class probabilities
    assert any(((labels > 0) & (labels < 1)).any() for labels in seen_labels)       # ... that are mixed
    assert 0 <= results["metrics"]["train_acc"][0] <= 1


def test_repeated_augmentation_puts_each_photo_twice_in_a_batch(tmp_path, monkeypatch):
    # the ztm recipe does not augment, so a photo's two views are the same tensor
    _, batches = _training_batches(tmp_path, monkeypatch, "--repeated-augmentation", "2")
    seen_images = [images for images, _ in batches]
    assert len(seen_images) == 2 and all(images.shape[0] == 4 for images in seen_images)
    assert all(torch.equal(images[0], images[1]) and torch.equal(images[2], images[3]) for images in seen_images)


def test_repeated_augmentation_is_refused_under_torchrun(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert "--repeated-augmentation works in a single process" in _user_error(capsys, ["--repeated-augmentation", "3"])


def test_an_ema_of_the_weights_is_evaluated_and_saved_without_changing_training(tmp_path):
    data_dir = make_colour_dataset(tmp_path / "colours", per_class=4)
    flags = ["--recipe", "ztm", "--model", "vit_ti_16", "--epochs", "2", "--image-size", "32", "--patch-size", "16",
             "--batch-size", "4", "--num-workers", "0",
             "--num-transformer-layers", "1", "--lr", "0.01", "--data-dir", str(data_dir)]
    plain = train.main(flags + ["--output-dir", str(tmp_path / "plain")])
    averaged = train.main(flags + ["--output-dir", str(tmp_path / "ema"), "--ema-decay", "0.5"])
    assert averaged["metrics"]["train_loss"] == plain["metrics"]["train_loss"]  # the same training
    raw = torch.load(tmp_path / "plain" / "vit_ti_16.pth", weights_only=True)
    ema = torch.load(tmp_path / "ema" / "vit_ti_16.pth", weights_only=True)
    assert raw.keys() == ema.keys() and any(not torch.equal(raw[key], ema[key]) for key in raw)
    model = utils.load_model(train.model_builder.create_vit("vit_ti_16", num_classes=2, img_size=32,
                                                            num_transformer_layers=1), tmp_path / "ema" / "vit_ti_16.pth")
    _, test_loader, _ = data_setup.create_dataloaders(data_dir / "train", data_dir / "test",
                                                      data_setup.manual_transforms(32), batch_size=4, num_workers=0)
    loss, _ = train.engine.test_step(model, test_loader, torch.nn.CrossEntropyLoss(), "cpu")
    assert loss == pytest.approx(averaged["metrics"]["test_loss"][-1], rel=1e-6)  # the saved weights were evaluated


def test_evaluation_sets_held_in_memory_give_the_same_run(tmp_path):
    data_dir = make_colour_dataset(tmp_path / "colours", per_class=5)
    flags = ["--model", "vit_ti_16", "--epochs", "2", "--image-size", "32", "--batch-size", "4", "--num-workers", "0",
             "--num-transformer-layers", "1", "--data-dir", str(data_dir), "--val-dir", str(data_dir / "test")]
    from_disk = train.main(flags + ["--output-dir", str(tmp_path / "disk"), "--no-preload-eval"])
    in_memory = train.main(flags + ["--output-dir", str(tmp_path / "memory")])
    assert in_memory["config"]["preload_eval"] and not from_disk["config"]["preload_eval"]
    assert in_memory["metrics"] == from_disk["metrics"]  # every loss and accuracy, to the last bit
    assert len(in_memory["metrics"]["val_acc"]) == 2 and in_memory["num_val_images"] == 10


def test_model_flags_reach_the_model(tmp_path, monkeypatch):
    built = []
    real_create_vit = train.model_builder.create_vit
    monkeypatch.setattr(train.model_builder, "create_vit",
                        lambda *args, **kwargs: built.append(real_create_vit(*args, **kwargs)) or built[-1])
    train.main(["--epochs", "1", "--image-size", "32", "--patch-size", "2", "--stem-channels", "4", "8",
                "--num-transformer-layers", "1", "--dropout", "0.3", "--batch-size", "4", "--num-workers", "0",
                "--data-dir", str(make_colour_dataset(tmp_path / "c")), "--output-dir", str(tmp_path / "o")])
    (model,) = built
    assert model.num_patches == (32 // (4 * 2)) ** 2 and model.stem.out_channels == 8
    assert model.embedding_dropout.p == 0.3
    assert {m.p for m in model.transformer_encoder.modules() if isinstance(m, torch.nn.Dropout)} == {0.3}


def test_no_flags_is_the_small_data_recipe_and_ztm_is_one_flag_away():
    defaults = vars(train.parse_args([]))
    assert defaults["recipe"] == "small-data"
    assert {name: defaults[name] for name in recipe.TRAINING_RECIPES["small-data"]} == recipe.TRAINING_RECIPES["small-data"]
    assert defaults["stem_channels"] == [24, 48, 96, 192] and defaults["image_size"] == 96 and defaults["drop_last"]
    ztm = vars(train.parse_args(["--recipe", "ztm"]))
    assert (ztm["model"], ztm["image_size"], ztm["batch_size"], ztm["epochs"], ztm["lr"], ztm["weight_decay"]) == (
        "vit_b_16", 224, 32, 10, 3e-3, 0.3)
    assert ztm["stem_channels"] is None and ztm["augment"] == "none" and not ztm["drop_last"]


def test_a_flag_given_overrides_the_recipe_and_a_shorter_run_keeps_its_share_of_warmup():
    args = train.parse_args(["--lr", "1e-3", "--no-drop-last", "--stem-channels", "0", "--patch-size", "8"])
    assert args.lr == 1e-3 and args.drop_last is False and args.stem_channels is None and args.patch_size == 8
    assert train.parse_args([]).warmup_epochs == 5 and train.parse_args([]).epochs == 200
    assert train.parse_args(["--epochs", "20"]).warmup_epochs == 1      # 5 of 200 epochs -> 0.5, at least 1
    assert train.parse_args(["--epochs", "400"]).warmup_epochs == 10
    assert train.parse_args(["--epochs", "1"]).warmup_epochs == 0
    assert train.parse_args(["--epochs", "20", "--warmup-epochs", "3"]).warmup_epochs == 3
    assert train.parse_args(["--recipe", "ztm", "--epochs", "20"]).warmup_epochs == 0  # no warmup stays none


def test_each_recipe_as_flags_parses_back_to_the_recipe():
    for name, values in recipe.TRAINING_RECIPES.items():
        other = next(other for other in recipe.TRAINING_RECIPES if other != name)
        parsed = vars(train.parse_args(["--recipe", other, *recipe.recipe_as_flags(values)]))
        # None is "off" (written as 0) or "the preset's own" (left out, so the other recipe's value stays).
        given = {key: value for key, value in values.items() if value is not None or key in ("stem_channels", "max_grad_norm")}
        assert {key: parsed[key] or None if key == "max_grad_norm" else parsed[key] for key in given} == given, name


TINY_VIT = ("--model", "vit_ti_16", "--patch-size", "16", "--num-transformer-layers", "1")


def _tiny_run(tmp_path: Path, *flags: str, model: Sequence[str] = TINY_VIT) -> dict:
    """One epoch of a tiny ztm run on 8 photos (4 red, 4 green) in batches of 2, with these flags."""
    return train.main(["--recipe", "ztm", *model, "--epochs", "1", "--image-size", "32", "--batch-size", "2",
                       "--num-workers", "0", "--data-dir", str(make_colour_dataset(tmp_path / "colours")),
                       "--output-dir", str(tmp_path / "out"), *flags])


def test_a_training_subset_takes_as_many_steps_as_the_whole_folder(tmp_path):
    results = _tiny_run(tmp_path, "--train-subset", "2", "--seed", "3")
    assert results["num_train_images"] == 2 and len(results["steps"]["lr"]) == 8 // 2
    assert sorted(photo.split("/")[0] for photo in results["train_photos"]) == ["green", "red"]  # balanced
    again = _tiny_run(tmp_path / "again", "--train-subset", "2", "--seed", "3")
    assert again["train_photos"] == results["train_photos"]  # the seed decides the photos
    assert _tiny_run(tmp_path / "whole")["train_photos"] is None


@pytest.mark.parametrize("flags, message", [
    (["--train-subset", "9"], "A subset of 9 photos cannot be drawn from 8: give 1 to 8"),
    (["--train-subset", "0"], "--train-subset must be at least 1, got 0"),
    (["--train-subset", "2", "--repeated-augmentation", "2"], "--train-subset chooses every epoch's photos itself"),
])
def test_a_training_subset_that_cannot_be_drawn_is_a_one_line_error(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit):
        _tiny_run(tmp_path, *flags)
    assert message in capsys.readouterr().err


def test_train_dir_trains_on_another_folder_and_tests_on_the_data_dirs(tmp_path):
    other = make_colour_dataset(tmp_path / "other", per_class=6) / "train"
    results = _tiny_run(tmp_path, "--train-dir", str(other))
    assert results["num_train_images"] == 12 and results["num_test_images"] == 8
    assert results["config"]["train_dir"] == str(other)


@pytest.mark.parametrize("flags, message", [
    (["--train-dir", "x", "--val-dir", "auto"], "with your own --data-dir or --train-dir (the 20 % split's holds 255"),
    (["--model", "resnet18", "--patch-size", "4", "--dropout", "0.2"],
     "--model resnet18 brings its own architecture and dropout: leave out --patch-size, --dropout"),
    (["--recipe", "finetune", "--stem-channels", "0"], "--model vit_ti_16_augreg brings its own architecture"),
])
def test_flags_that_do_not_fit_the_model_or_the_data_are_one_line_errors(capsys, flags, message):
    assert message in _user_error(capsys, flags)


def test_resnet18_trains_from_scratch_through_the_command(tmp_path):
    results = _tiny_run(tmp_path, "--recipe", "small-data", "--epochs", "1", model=["--model", "resnet18"])
    assert results["config"]["model"] == "resnet18" and results["config"]["dropout"] is None  # no ViT flag applies
    model = utils.load_model(torchvision.models.resnet18(num_classes=2), tmp_path / "out" / "resnet18.pth")
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(),
                                                      torchvision.models.resnet18(num_classes=2).parameters()))


@pytest.mark.parametrize("flags, dtype", [([], False), (["--amp"], True), (["--amp", "float16"], torch.float16),
                                          (["--amp", "bfloat16"], torch.bfloat16)])
def test_amp_is_off_the_devices_choice_or_the_dtype_named(flags, dtype):
    assert train._amp(train.parse_args(flags)) == dtype
