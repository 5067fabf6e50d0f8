"""benchmarks/gpu_check.py: on a machine without CUDA (this one, CI) it says so in one line and runs nothing; its
arguments are checked; its summary reads the benchmarks' own output lines."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the script would run its checks")
def test_without_cuda_it_says_so_in_one_line_and_runs_nothing(tmp_path):
    completed = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "out")], capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().splitlines() == [
        "No CUDA GPU here: benchmarks/gpu_check.py checks the course's GPU paths on a CUDA machine; nothing run."]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [[], ["out", "--checks", "notebook"], ["out", "--timeout", "soon"]])
def test_wrong_arguments_stop_with_status_2(argv):
    with pytest.raises(SystemExit) as stopped:
        gpu_check.parse_args(argv)
    assert stopped.value.code == 2


def test_every_check_is_run_by_default():
    options = gpu_check.parse_args(["out"])
    assert options.checks == ["notebooks", "throughput", "training"] and options.output_dir == Path("out")


def test_the_throughput_check_reads_the_benchmarks_ratio_line(tmp_path, monkeypatch):
    outputs = {"float32": "ratio_vs_torchvision train=1.02 infer=0.98\n", "bfloat16": "out of memory\n"}
    monkeypatch.setattr(gpu_check, "_run", lambda command, timeout: subprocess.CompletedProcess(
        command, 0 if "ratio" in outputs[command[4]] else 1, outputs[command[4]], "CUDA error"))
    result = gpu_check.check_throughput(tmp_path, timeout=10)
    assert result["course_over_torchvision"] == {"float32": {"train": 1.02, "infer": 0.98}, "bfloat16": None}
    assert not result["passed"] and "CUDA error" in result["tail"]
    assert (tmp_path / "throughput_float32.txt").read_text() == outputs["float32"] + "CUDA error"


def test_the_summary_table_has_one_row_a_check():
    summary = {"device": "NVIDIA H100", "torch": "2.14.1", "date": "2026-12-07", "checks": {
        "throughput": {"passed": True, "seconds": 61.2, "course_over_torchvision": {"float32": None}, "tail": "x"},
        "training": {"passed": False, "seconds": 30.0, "runs": {}}}}
    lines = gpu_check.markdown(summary).splitlines()
    assert lines[0] == "GPU check on NVIDIA H100, torch 2.14.1, 2026-12-07"
    assert lines[4:] == ['| throughput | passed | 61 | {"course_over_torchvision": {"float32": null}} |',
                         "| training | FAILED | 30 | {\"runs\": {}} |"]
