"""Data-parallel training: the sharding rules, and torchrun with 2 CPU processes (gloo) end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from going_modular import data_setup, engine, model_builder, utils
from going_modular.training import distributed

COLOURS = {"blue": (20, 20, 220), "green": (20, 220, 20), "red": (220, 20, 20)}


def _colour_dataset(root: Path, train_per_class: int, test_per_class: int) -> Path:
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (36 + i, 34), tuple(c + 3 * i for c in colour)).save(folder / f"{i}.png")
    return root


def test_a_plain_run_is_not_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init_from_env() is None
    assert distributed.is_main_process()


def test_shards_cover_the_test_set_once_and_give_equal_training_steps():
    train_data, test_data = TensorDataset(torch.arange(11)), TensorDataset(torch.arange(7))
    train_loader, test_loader = torch.utils.data.DataLoader(train_data, 2), torch.utils.data.DataLoader(test_data, 2)
    test_seen, train_lengths, train_seen = [], set(), set()
    for rank in range(3):
        context = distributed.DistributedContext(rank, rank, 3, torch.device("cpu"), "gloo")
        train_shard, test_shard = distributed.shard_dataloaders(train_loader, test_loader, context, seed=0)
        train_shard.sampler.set_epoch(1)
        test_seen += [int(x) for (batch,) in test_shard for x in batch]
        train_items = [int(x) for (batch,) in train_shard for x in batch]
        train_lengths.add((len(train_items), len(train_shard)))
        train_seen.update(train_items)
    assert sorted(test_seen) == list(range(7))  # every test item exactly once, no padding
    assert train_lengths == {(4, 2)}  # 11 items over 3 ranks: 4 each (one repeated), the same number of steps
    assert train_seen == set(range(11))


def test_the_shuffle_changes_with_the_epoch_and_is_the_same_on_every_rank():
    loader = torch.utils.data.DataLoader(TensorDataset(torch.arange(40)), 40)
    orders = {}
    for rank in range(2):
        context = distributed.DistributedContext(rank, rank, 2, torch.device("cpu"), "gloo")
        train_shard, _ = distributed.shard_dataloaders(loader, loader, context, seed=3)
        for epoch in (1, 2):
            train_shard.sampler.set_epoch(epoch)
            orders[rank, epoch] = next(iter(train_shard))[0].tolist()
    assert orders[0, 1] != orders[0, 2]
    assert sorted(orders[0, 1] + orders[1, 1]) == list(range(40))  # ranks split one shuffle between them


def test_torchrun_trains_on_two_cpu_processes_and_rank_0_reports_the_whole_dataset(tmp_path):
    data_dir = _colour_dataset(tmp_path / "colours", train_per_class=7, test_per_class=5)  # 21 train, 15 test
    output_dir = tmp_path / "out"
    epochs = 4
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "going_modular.train", "--recipe", "ztm", "--model", "vit_ti_16", "--image-size", "32", "--patch-size", "8",
        "--epochs", str(epochs), "--batch-size", "4", "--lr", "1e-3", "--num-workers", "0", "--device", "cpu",
        "--data-dir", str(data_dir), "--output-dir", str(output_dir), "--model-name", "ddp", "--seed", "5",
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]

    # Only rank 0 printed and wrote files.
    assert completed.stdout.count("Epoch: 1 |") == 1
    assert "x 2 processes (gloo)" in completed.stdout
    assert sorted(path.name for path in output_dir.iterdir()) == ["ddp.pth", "ddp_loss_curves.png", "ddp_results.json"]

    results = json.loads((output_dir / "ddp_results.json").read_text())
    assert results["world_size"] == 2
    assert (results["num_train_images"], results["num_test_images"]) == (21, 15)
    metrics = results["metrics"]
    assert len(metrics["train_loss"]) == epochs
    assert metrics["train_loss"][-1] < metrics["train_loss"][0]  # it trains

    # The test metrics rank 0 saved are those of the whole test set: one process, the saved model, all 15 images.
    model = utils.load_model(model_builder.create_vit("vit_ti_16", num_classes=3, img_size=32, patch_size=8),
                             output_dir / "ddp.pth")
    _, test_loader, _ = data_setup.create_dataloaders(
        data_dir / "train", data_dir / "test", data_setup.manual_transforms(32), batch_size=4, num_workers=0)
    test_loss, test_acc = engine.test_step(model, test_loader, torch.nn.CrossEntropyLoss(), "cpu")
    assert test_acc == pytest.approx(metrics["test_acc"][-1], abs=1e-9)
    assert test_loss == pytest.approx(metrics["test_loss"][-1], rel=1e-5)
