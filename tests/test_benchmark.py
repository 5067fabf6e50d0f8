"""benchmarks/throughput.py runs end to end on a tiny model and ends with its machine-readable line."""
import re
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


def test_throughput_benchmark_runs_on_a_tiny_model():
    completed = subprocess.run(
        [sys.executable, str(BENCHMARK), "--model", "vit_ti_16", "--image-size", "32", "--batch-size", "2",
         "--num-classes", "3", "--repeats", "2", "--steps", "1", "--warmup", "1", "--no-timm", "--peak-size", "256"],
        capture_output=True, text=True, check=True, timeout=300,
    )
    lines = completed.stdout.strip().splitlines()
    assert re.fullmatch(r"ratio_vs_torchvision train=\d+\.\d\d infer=\d+\.\d\d", lines[-1])
    table = [line.split() for line in lines if line.startswith(("course", "torchvision"))]
    assert sorted((row[0], row[1]) for row in table) == [
        ("course", "infer"), ("course", "train"), ("torchvision", "infer"), ("torchvision", "train")]
    assert all(float(row[2]) > 0 for row in table)
    assert "measured float32 matmul peak" in completed.stdout


def test_throughput_benchmark_help():
    completed = subprocess.run([sys.executable, str(BENCHMARK), "--help"], capture_output=True, text=True, check=True)
    for flag in ("--model", "--batch-size", "--image-size", "--device", "--dtype", "--compile"):
        assert flag in completed.stdout
