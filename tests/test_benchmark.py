"""The benchmarks run end to end on tiny models: throughput's machine-readable line, scratch_accuracy's summary."""
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"
sys.path.insert(0, str(BENCHMARK.parent))  # as when a benchmark runs as a script: its shared training_runs module


def test_throughput_benchmark_runs_on_a_tiny_model():
    completed = subprocess.run(
        [sys.executable, str(BENCHMARK), "--model", "vit_ti_16", "--image-size", "32", "--batch-size", "2",
         "--num-classes", "3", "--repeats", "3", "--steps", "1", "--warmup", "1", "--no-timm", "--peak-size", "256"],
        capture_output=True, text=True, check=True, timeout=300,
    )
    lines = completed.stdout.strip().splitlines()
    last = re.fullmatch(r"ratio_vs_torchvision train=(\d+\.\d\d) infer=(\d+\.\d\d)", lines[-1])
    assert last
    table = [line.split() for line in lines if line.startswith(("course", "torchvision"))]
    assert sorted((row[0], row[1]) for row in table) == [
        ("course", "infer"), ("course", "train"), ("torchvision", "infer"), ("torchvision", "train")]
    assert all(float(row[2]) > 0 for row in table)
    peak = re.search(r"float32 matmul peak, measured in each of 3 rounds: "
                     r"best (\d+) GFLOP/s \(min (\d+), median (\d+)\)", completed.stdout)
    assert peak and 0 < int(peak[2]) <= int(peak[3]) <= int(peak[1])
    number = r"(\d+\.\d\d)"
    spread = re.search(rf"ratio course / torchvision, spread over 3 rounds: "
                       rf"train {number} \(min {number} - max {number}\), "
                       rf"infer {number} \(min {number} - max {number}\)", completed.stdout)
    assert spread
    train, infer = [float(spread[i]) for i in (1, 2, 3)], [float(spread[i]) for i in (4, 5, 6)]
    for median, low, high in (train, infer):  # the ratio of medians lies within the per-round ratios
        assert low <= median <= high
    assert (spread[1], spread[4]) == (last[1], last[2])  # the last line's ratios are the spread line's medians


def test_throughput_benchmark_help():
    completed = subprocess.run([sys.executable, str(BENCHMARK), "--help"], capture_output=True, text=True, check=True)
    for flag in ("--model", "--batch-size", "--image-size", "--device", "--dtype", "--compile"):
        assert flag in completed.stdout


def _load_scratch_accuracy():
    spec = importlib.util.spec_from_file_location("scratch_accuracy", BENCHMARK.parent / "scratch_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scratch_accuracy_runs_every_seed_and_summarises_the_final_epoch(tmp_path):
    for split in ("train", "test", "val"):
        for name, colour in (("green", (20, 220, 20)), ("red", (220, 20, 20))):
            (tmp_path / "data" / split / name).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (40, 40 + i), colour).save(tmp_path / "data" / split / name / f"{i}.png")
    scratch_accuracy = _load_scratch_accuracy()
    summary = scratch_accuracy.main([
        "--seeds", "0", "1", "--jobs", "2", "--output-dir", str(tmp_path / "out"), "--label", "tiny", "--",
        "--epochs", "2", "--warmup-epochs", "1", "--image-size", "32", "--batch-size", "4", "--num-workers", "0",
        "--data-dir", str(tmp_path / "data"), "--val-dir", str(tmp_path / "data" / "val"),
    ])
    assert json.loads((tmp_path / "out" / "tiny" / "summary.json").read_text()) == summary
    finals = [run["final_test_acc"] for run in summary["runs"]]
    for run in summary["runs"]:
        saved = json.loads((tmp_path / "out" / "tiny" / f"seed{run['seed']}_results.json").read_text())
        assert run["final_test_acc"] == saved["metrics"]["test_acc"][-1]
        assert run["final_val_acc"] == saved["metrics"]["val_acc"][-1] and saved["num_val_images"] == 6
        assert saved["config"]["epochs"] == 2 and saved["config"]["image_size"] == 32  # flags after -- win
    assert [run["seed"] for run in summary["runs"]] == [0, 1]
    assert summary["final_test_acc"]["mean"] == pytest.approx(sum(finals) / 2)
    assert summary["final_test_acc"]["std"] == pytest.approx(abs(finals[0] - finals[1]) / 2 ** 0.5)


def test_scratch_accuracy_summary_of_one_run_and_of_none():
    scratch_accuracy = _load_scratch_accuracy()
    assert scratch_accuracy.summarise([0.5]) == {"mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5}
    with pytest.raises(ValueError, match="No runs"):
        scratch_accuracy.summarise([])


def test_plain_vit_flags_are_the_measured_plain_recipe_whatever_the_default_epochs():
    from going_modular import train
    args = train.parse_args(_load_scratch_accuracy().PLAIN_VIT_FLAGS)
    assert args.stem_channels is None and (args.patch_size, args.image_size, args.num_transformer_layers) == (8, 32, 12)
    assert (args.pool, args.lr, args.epochs, args.warmup_epochs) == ("mean", 3e-4, 100, 5)


def test_notebook_times_reads_the_wall_time_and_the_run_from_a_notebook():
    spec = importlib.util.spec_from_file_location("notebook_times", BENCHMARK.parent / "notebook_times.py")
    notebook_times = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(notebook_times)

    def cell(start, end, text=""):
        return {"cell_type": "code", "outputs": [{"output_type": "stream", "name": "stdout", "text": [text]}],
                "metadata": {"execution": {"iopub.execute_input": start, "shell.execute_reply": end}}}

    notebook = {"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": []},
        cell("2026-01-01T10:00:00.000Z", "2026-01-01T10:00:01.000Z", "device: cpu | torch 2.14.1 | full run\n"),
        cell("2026-01-01T10:00:01.500Z", "2026-01-01T10:02:30.000Z"),
    ]}
    assert notebook_times.wall_seconds(notebook) == 150.0
    assert notebook_times.run_description(notebook) == "cpu, full run"
    assert notebook_times.wall_seconds({"cells": [{"cell_type": "code", "metadata": {}, "outputs": []}]}) is None
