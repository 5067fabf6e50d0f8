"""Tests for going_modular.utils: atomic saves, safe loads, seeds and device choice."""
from __future__ import annotations

import io
import os
import random
import stat
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from going_modular import utils


def _tiny_model(num_classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, num_classes))


class _PrintsWhenUnpickled:
    """Stands in for a malicious object: unpickling it calls print("pwned") (harmless, but observable)."""

    def __reduce__(self):
        return (print, ("pwned",))


def _assert_same_state(first: nn.Module, second: nn.Module) -> None:
    first_state, second_state = first.state_dict(), second.state_dict()
    assert first_state.keys() == second_state.keys()
    for key in first_state:
        assert torch.equal(first_state[key], second_state[key]), key


def test_save_then_load_round_trip(tmp_path, capsys):
    torch.manual_seed(0)
    saved = _tiny_model()
    path = utils.save_model(saved, tmp_path / "new" / "dir", "tiny.pth")

    assert path == tmp_path / "new" / "dir" / "tiny.pth"
    assert path.is_file()
    assert str(path) in capsys.readouterr().out

    torch.manual_seed(1)
    fresh = _tiny_model()
    assert not torch.equal(fresh[2].weight, saved[2].weight)
    loaded = utils.load_model(fresh, path, device="cpu")
    assert loaded is fresh
    _assert_same_state(loaded, saved)


@pytest.mark.parametrize("model_name", ["tiny", "tiny.pkl", "tiny.pth.bak", "tiny.PT2"])
def test_save_model_rejects_other_extensions(tmp_path, model_name):
    with pytest.raises(ValueError, match=r"should end with '\.pth' or '\.pt'"):
        utils.save_model(_tiny_model(), tmp_path, model_name)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_save_keeps_the_earlier_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    torch.manual_seed(0)
    good = _tiny_model()
    path = utils.save_model(good, tmp_path, "model.pt")
    good_bytes = path.read_bytes()

    real_save = torch.save

    def save_half_then_fail(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        half = buffer.getvalue()[: len(buffer.getvalue()) // 2]
        if hasattr(f, "write"):
            f.write(half)
        else:
            with open(f, "wb") as file:
                file.write(half)
        raise OSError("No space left on device (simulated)")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    torch.manual_seed(1)
    with pytest.raises(OSError, match="simulated"):
        utils.save_model(_tiny_model(), tmp_path, "model.pt")
    monkeypatch.undo()

    assert path.read_bytes() == good_bytes
    assert [entry.name for entry in tmp_path.iterdir()] == ["model.pt"]
    _assert_same_state(utils.load_model(_tiny_model(), path), good)


def test_load_model_refuses_pickled_code_without_running_it(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "evil": _PrintsWhenUnpickled()}, path)
    capsys.readouterr()

    with pytest.raises(ValueError) as caught:
        utils.load_model(_tiny_model(), path)
    message = str(caught.value)
    assert str(path) in message
    assert "pickled Python objects beyond tensors" in message
    assert "arbitrary code" in message
    assert "save_model" in message
    assert "pwned" not in capsys.readouterr().out

    # Control: the file really does run code when loaded without weights_only.
    torch.load(path, weights_only=False)
    assert "pwned" in capsys.readouterr().out


def test_load_model_rejects_a_checkpoint_from_another_architecture_and_leaves_the_model_unchanged(tmp_path):
    path = utils.save_model(_tiny_model(num_classes=5), tmp_path, "five_classes.pth")
    model = _tiny_model(num_classes=3)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(utils.CheckpointError, match="different architecture or configuration") as caught:
        utils.load_model(model, path)
    assert "size mismatch for 2.weight" in str(caught.value)  # torch's own report of what does not fit
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())

    other = nn.Sequential(nn.Flatten(), nn.Linear(3, 3))  # keys "1.*" not "2.*"
    with pytest.raises(ValueError, match="different architecture") as caught:
        utils.load_model(other, path)
    assert 'Missing key(s) in state_dict: "1.weight"' in str(caught.value)
    assert 'Unexpected key(s) in state_dict: "2.weight"' in str(caught.value)


@pytest.mark.parametrize("wrap", [nn.DataParallel, torch.compile])
def test_load_model_accepts_weights_saved_from_a_wrapped_model(tmp_path, wrap):
    torch.manual_seed(0)
    saved = _tiny_model()
    path = tmp_path / "wrapped.pth"
    state = wrap(saved).state_dict()
    assert all(key.startswith(("module.", "_orig_mod.")) for key in state)
    torch.save(state, path)
    torch.manual_seed(1)
    _assert_same_state(utils.load_model(_tiny_model(), path), saved)


def test_load_model_takes_the_model_weights_of_a_training_checkpoint(tmp_path):
    torch.manual_seed(0)
    saved = _tiny_model()
    path = tmp_path / "run_checkpoint.pth"
    torch.save({"model": saved.state_dict(), "optimizer": {}, "epoch": 3, "config": {"lr": 0.1}}, path)
    _assert_same_state(utils.load_model(_tiny_model(), path), saved)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_saved_file_gets_the_usual_permissions(tmp_path):
    # A temporary file from tempfile.mkstemp would be owner-only (0600) after os.replace.
    path = utils.save_model(_tiny_model(), tmp_path, "model.pth")
    reference = tmp_path / "reference"
    reference.write_bytes(b"")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)


def test_load_model_names_a_missing_file(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        utils.load_model(_tiny_model(), missing)


@pytest.mark.parametrize("content", [b"not a checkpoint", b"<html>404 Not Found</html>", b""])
def test_load_model_says_a_file_is_not_a_checkpoint_without_blaming_pickled_code(tmp_path, content):
    path = tmp_path / "notes.pth"
    path.write_bytes(content)
    with pytest.raises(utils.CheckpointError) as caught:
        utils.load_model(_tiny_model(), path)
    message = str(caught.value)
    assert "notes.pth is not a PyTorch checkpoint" in message and "zip archive" in message
    assert "weights_only=False" not in message and "pickled" not in message


def test_load_model_reports_a_truncated_checkpoint(tmp_path):
    path = utils.save_model(_tiny_model(), tmp_path, "model.pth")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(utils.CheckpointError, match="not a PyTorch checkpoint.*cut short"):
        utils.load_model(_tiny_model(), path)


def test_set_seeds_makes_random_numbers_reproducible():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3)

    utils.set_seeds(7)
    first = draw()
    utils.set_seeds(7)
    second = draw()
    utils.set_seeds(8)
    third = draw()

    assert first[:2] == second[:2]
    assert torch.equal(first[2], second[2])
    assert not torch.equal(first[2], third[2])


def test_get_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    device = utils.get_device()
    assert isinstance(device, torch.device)
    assert device.type in {"cuda", "mps", "cpu"}

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert utils.get_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert utils.get_device() == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert utils.get_device() == torch.device("cpu")


def test_load_model_reports_a_damaged_archive_and_a_file_that_is_not_a_state_dict(tmp_path):
    damaged = tmp_path / "damaged.pth"
    with zipfile.ZipFile(damaged, "w") as archive:
        archive.writestr("notes.txt", "a zip archive, but not one torch.save wrote")
    with pytest.raises(utils.CheckpointError, match="damaged.pth is a damaged PyTorch checkpoint"):
        utils.load_model(_tiny_model(), damaged)
    tensor_only = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(utils.CheckpointError, match="holds a Tensor, not a state dict"):
        utils.load_model(_tiny_model(), tensor_only)
