"""Checkpoint and resume: a run killed (SIGKILL) mid-way and resumed ends exactly as one never interrupted."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from going_modular import train
from going_modular.training import checkpoint

# Kills the training process right after the checkpoint of epoch KILL_AT is written ("after"), or in the
# middle of writing it ("during-write": part of the file is on disk when the process dies).
KILLER = '''
import os, signal, sys
import torch
from going_modular import train
from going_modular.training import checkpoint

kill_at, mode = int(sys.argv[1]), sys.argv[2]
real_save_checkpoint, real_torch_save = checkpoint.save_checkpoint, checkpoint.torch.save


def write_part_then_die(obj, file, *args, **kwargs):
    file.write(b"PK" + b"part of a checkpoint" * 100)
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def save_checkpoint(path, **kwargs):
    if kwargs["epoch"] == kill_at and mode == "during-write":
        checkpoint.torch.save = write_part_then_die
    written = real_save_checkpoint(path, **kwargs)
    checkpoint.torch.save = real_torch_save
    if kwargs["epoch"] == kill_at and mode == "after":
        if torch.distributed.is_initialized():
            torch.distributed.barrier()  # every process dies after rank 0 has written, never while it writes
        os.kill(os.getpid(), signal.SIGKILL)
    return written


checkpoint.save_checkpoint = save_checkpoint
train.main(sys.argv[3:])
'''
# Keys of the results JSON that describe the session rather than what was computed.
SESSION_KEYS = {"wall_time_seconds", "resumed_after_epochs", "model_path", "config"}


def _dataset(root: Path) -> Path:
    for split, count in (("train", 6), ("test", 3)):
        for name, colour in (("red", (200, 30, 40)), ("blue", (30, 40, 200))):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (40 + 3 * i, 36), tuple(c + 7 * i for c in colour)).save(folder / f"{i}.png")
    return root


def _flags(data_dir: Path, output_dir: Path, *extra: str, torchrun: bool = False) -> list[str]:
    single_process = [] if torchrun else ["--repeated-augmentation", "2"]  # refused under torchrun
    return [*single_process,
        "--recipe", "ztm", "--model", "vit_ti_16", "--image-size", "32", "--patch-size", "8", "--num-transformer-layers", "2",
        "--batch-size", "4", "--epochs", "4", "--lr", "1e-3", "--warmup-epochs", "1", "--lr-decay", "cosine",
        "--max-grad-norm", "1.0", "--augment", "trivialaugment", "--drop-path-rate", "0.1", "--seed", "3",
        "--mixup-alpha", "0.8", "--cutmix-alpha", "1.0", "--ema-decay", "0.9",
        "--num-workers", "0", "--device", "cpu", "--model-name", "run",
        "--data-dir", str(data_dir), "--output-dir", str(output_dir), *extra,
    ]


def _run(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same threads, so the same float sums, every run
    return subprocess.run([sys.executable, *arguments], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data_dir = _dataset(root / "data")
    completed = _run(["-m", "going_modular.train", *_flags(data_dir, root / "uninterrupted")], root)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert not (root / "uninterrupted" / "run_checkpoint.pth").exists()  # removed once the run finished
    return data_dir, root / "uninterrupted"


def _assert_same_run(resumed_dir: Path, reference_dir: Path) -> None:
    reference = torch.load(reference_dir / "run.pth", weights_only=True)
    resumed = torch.load(resumed_dir / "run.pth", weights_only=True)
    assert reference.keys() == resumed.keys()
    for key in reference:
        assert torch.equal(reference[key], resumed[key]), key
    expected = json.loads((reference_dir / "run_results.json").read_text())
    actual = json.loads((resumed_dir / "run_results.json").read_text())
    assert {k: v for k, v in actual.items() if k not in SESSION_KEYS} == \
           {k: v for k, v in expected.items() if k not in SESSION_KEYS}
    assert len(actual["metrics"]["test_acc"]) == 4 and len(actual["steps"]["lr"]) % 4 == 0
    ignored = set(train.RESUMABLE_CHANGES)
    assert {k: v for k, v in actual["config"].items() if k not in ignored} == \
           {k: v for k, v in expected["config"].items() if k not in ignored}


@pytest.mark.parametrize("mode", ["after", "during-write"])
def test_a_killed_run_resumes_to_the_same_weights_and_results(uninterrupted, tmp_path, mode, capsys):
    data_dir, reference_dir = uninterrupted
    output_dir = tmp_path / "out"
    (tmp_path / "killer.py").write_text(KILLER)
    kill_at = 2 if mode == "after" else 3  # "during-write": epoch 3's checkpoint is cut off; epoch 2's remains
    killed = _run(["killer.py", str(kill_at), mode, *_flags(data_dir, output_dir)], tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert "Epoch: 2 |" in killed.stdout and "Epoch: 4 |" not in killed.stdout
    assert not (output_dir / "run.pth").exists()
    state = checkpoint.load_checkpoint(output_dir / "run_checkpoint.pth")
    assert state["epoch"] == 2 and len(state["results"]["metrics"]["train_loss"]) == 2

    # Resuming with other settings is refused, naming the difference; the checkpoint stays as it was.
    with pytest.raises(SystemExit) as caught:
        train.main(_flags(data_dir, output_dir, "--resume") + ["--lr", "2e-3", "--batch-size", "2"])
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert "batch_size: 4 in the checkpoint, 2 now; lr: 0.001 in the checkpoint, 0.002 now" in error
    assert checkpoint.load_checkpoint(output_dir / "run_checkpoint.pth")["epoch"] == 2

    # A new run without --resume would overwrite the checkpoint: refused too.
    with pytest.raises(SystemExit):
        train.main(_flags(data_dir, output_dir))
    assert "holds the checkpoint of an interrupted run. Add --resume" in capsys.readouterr().err

    resumed = _run(["-m", "going_modular.train", *_flags(data_dir, output_dir, "--resume")], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stdout and "2 of 4 epochs were done" in resumed.stdout
    assert "Epoch: 2 |" not in resumed.stdout and "Epoch: 3 |" in resumed.stdout
    _assert_same_run(output_dir, reference_dir)
    results = json.loads((output_dir / "run_results.json").read_text())
    assert results["resumed_after_epochs"] == [2] and len(results["steps"]["lr"]) == 4 * 3  # 12 images, batch 4
    assert not (output_dir / "run_checkpoint.pth").exists()
    with pytest.raises(SystemExit):  # resuming a finished run says where its results are
        train.main(_flags(data_dir, output_dir, "--resume"))
    assert "the run finished" in capsys.readouterr().err


def test_resume_without_a_checkpoint_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        train.main(["--resume", "--output-dir", str(tmp_path), "--model-name", "never_started"])
    assert caught.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: There is no checkpoint to resume from at ")
    assert "never_started_checkpoint.pth" in error and len(error.splitlines()) == 1


def test_a_checkpoint_holds_everything_a_run_needs(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.5, total_iters=4)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    path = checkpoint.save_checkpoint(
        tmp_path / "c.pth", model=model, optimizer=optimizer, scheduler=scheduler, grad_scaler=None, epoch=1,
        results={"metrics": {"train_loss": [0.5]}}, config={"lr": 0.1}, training_seconds=1.5)
    expected_draws = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())

    torch.manual_seed(123)  # a fresh process would have other generator states
    new_model = torch.nn.Linear(3, 2)
    new_optimizer = torch.optim.AdamW(new_model.parameters(), lr=0.1)
    new_scheduler = torch.optim.lr_scheduler.LinearLR(new_optimizer, start_factor=0.5, total_iters=4)
    state = checkpoint.load_checkpoint(path)
    checkpoint.restore(state, model=new_model, optimizer=new_optimizer, scheduler=new_scheduler, grad_scaler=None)
    assert torch.equal(new_model.weight, model.weight)
    assert new_optimizer.state_dict()["state"][0]["step"] == 1
    assert new_scheduler.last_epoch == 1 and new_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    assert (state["epoch"], state["training_seconds"], state["config"]) == (1, 1.5, {"lr": 0.1})
    draws = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    assert torch.equal(draws[0], expected_draws[0]) and draws[1:] == expected_draws[1:]


def test_a_file_that_is_not_a_checkpoint_cannot_be_resumed(tmp_path):
    path = tmp_path / "notes_checkpoint.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(checkpoint.ResumeError, match="could not be read as a training checkpoint"):
        checkpoint.load_checkpoint(path)
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(checkpoint.ResumeError, match="is not a training checkpoint"):
        checkpoint.load_checkpoint(path)


def test_a_killed_torchrun_run_resumes_to_the_same_weights_and_results(tmp_path):
    data_dir = _dataset(tmp_path / "data")
    (tmp_path / "killer.py").write_text(KILLER)
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    reference = _run([*torchrun, "-m", "going_modular.train", *_flags(data_dir, tmp_path / "reference", torchrun=True)],
                     tmp_path)
    assert reference.returncode == 0, reference.stderr[-3000:]

    output_dir = tmp_path / "out"
    killed = _run([*torchrun, "killer.py", "2", "after", *_flags(data_dir, output_dir, torchrun=True)], tmp_path)
    assert killed.returncode != 0 and not (output_dir / "run.pth").exists()
    state = checkpoint.load_checkpoint(output_dir / "run_checkpoint.pth")
    assert state["epoch"] == 2 and len(state["rng_states"]) == 2  # one set of generators per process

    resumed = _run([*torchrun, "-m", "going_modular.train", *_flags(data_dir, output_dir, "--resume", torchrun=True)],
                   tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("Resuming from") == 1  # rank 0 speaks for both
    _assert_same_run(output_dir, tmp_path / "reference")
    results = json.loads((output_dir / "run_results.json").read_text())
    assert results["world_size"] == 2 and len(results["steps"]["lr"]) == 4 * 1  # 6 images per process, batch 4