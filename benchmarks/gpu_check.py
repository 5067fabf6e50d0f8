"""The course's CUDA paths, checked in one go on a machine with an NVIDIA GPU (about 8 minutes on one H100).

    python benchmarks/gpu_check.py OUT_DIR        # writes OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md

Three checks, each reported as passed or failed with its time, whatever the others do:
    notebooks   every main notebook alone in reduced mode, as Colab runs it (tests/test_notebooks_alone.py);
                they pick the GPU themselves. Needs the dataset and weights staged in data/ and weights/.
    throughput  benchmarks/throughput.py on CUDA, the course's ViT-B/16 against torchvision's, float32 and
                bfloat16 autocast.
    training    2 epochs of the small-data recipe (python -m going_modular.train) with float16 autocast and the
                gradient scaler, then 2 with bfloat16.
On a machine without CUDA it says so in one line and exits 0, having run nothing.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ("notebooks", "throughput", "training")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output_dir", type=Path, help="Where gpu_check.json and gpu_check.md go (made if missing).")
    parser.add_argument("--checks", nargs="+", choices=CHECKS, default=list(CHECKS), help="Which checks to run.")
    parser.add_argument("--timeout", type=int, default=300, help="Seconds each check may take before it fails.")
    return parser.parse_args(argv)


def _run(command: Sequence[str], timeout: int) -> subprocess.CompletedProcess:
    """A child process of the course (``command`` after the interpreter) in the checkout, output captured."""
    try:
        return subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        return subprocess.CompletedProcess(error.cmd, 124, error.stdout or "", f"timed out after {timeout} s")


def check_notebooks(output_dir: Path, timeout: int) -> dict:
    """tests/test_notebooks_alone.py on this machine: one entry per notebook, passed, failed or skipped."""
    report = output_dir / "notebooks.xml"
    run = _run(["-m", "pytest", "tests/test_notebooks_alone.py", "-q", "-p", "no:cacheprovider",
                f"--junitxml={report}"], timeout)
    notebooks = {}
    if report.exists():
        for case in ElementTree.parse(report).iter("testcase"):
            outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
            notebooks[re.sub(r".*\[(.*)\]", r"\1", case.get("name"))] = outcome
    passed = run.returncode == 0 and notebooks and all(value == "passed" for value in notebooks.values())
    return {"passed": bool(passed), "notebooks": notebooks, "tail": (run.stdout + run.stderr)[-1500:]}


def check_throughput(output_dir: Path, timeout: int) -> dict:
    """Images per second, course over torchvision, in float32 and in bfloat16 autocast (batch 64)."""
    ratios, tails = {}, []
    for dtype in ("float32", "bfloat16"):
        run = _run(["benchmarks/throughput.py", "--device", "cuda", "--dtype", dtype, "--batch-size", "64",
                    "--repeats", "5", "--no-timm"], timeout // 2)
        (output_dir / f"throughput_{dtype}.txt").write_text(run.stdout + run.stderr)
        found = re.search(r"ratio_vs_torchvision train=([\d.]+) infer=([\d.]+)", run.stdout)
        ratios[dtype] = {"train": float(found[1]), "infer": float(found[2])} if found else None
        tails.append(run.stderr[-700:] if run.returncode else "")
    return {"passed": all(ratios.values()), "course_over_torchvision": ratios, "tail": "".join(tails)}


def check_training(output_dir: Path, timeout: int) -> dict:
    """2 epochs of the small-data recipe with float16 and the scaler, then with bfloat16: final loss and accuracy."""
    runs = {}
    for dtype in ("float16", "bfloat16"):
        run = _run(["-m", "going_modular.train", "--epochs", "2", "--amp", dtype, "--device", "cuda",
                    "--output-dir", str(output_dir / "training"), "--model-name", dtype], timeout // 2)
        results = output_dir / "training" / f"{dtype}_results.json"
        metrics = json.loads(results.read_text())["metrics"] if run.returncode == 0 and results.exists() else None
        runs[dtype] = {"train_loss": metrics["train_loss"][-1], "test_acc": metrics["test_acc"][-1]} if metrics \
            else {"error": (run.stdout + run.stderr)[-700:]}
    return {"passed": all("error" not in run for run in runs.values()), "runs": runs}


def markdown(summary: dict) -> str:
    """The summary as a short Markdown table, one row a check."""
    lines = [f"GPU check on {summary['device']}, torch {summary['torch']}, {summary['date']}", "",
             "| check | result | seconds | details |", "| --- | --- | --- | --- |"]
    for name, result in summary["checks"].items():
        details = {key: value for key, value in result.items() if key not in ("passed", "seconds", "tail")}
        lines.append(f"| {name} | {'passed' if result['passed'] else 'FAILED'} | {result['seconds']:.0f} | "
                     f"{json.dumps(details).replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> Optional[dict]:
    """Run the checks asked for and write their summary; None (nothing run) without CUDA."""
    options = parse_args(argv)
    if not torch.cuda.is_available():
        print("No CUDA GPU here: benchmarks/gpu_check.py checks the course's GPU paths on a CUDA machine; nothing run.")
        return None
    options.output_dir.mkdir(parents=True, exist_ok=True)
    checks: dict[str, Callable[[Path, int], dict]] = {
        "notebooks": check_notebooks, "throughput": check_throughput, "training": check_training}
    summary = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
               "checks": {}}
    for name in options.checks:
        start = time.perf_counter()
        summary["checks"][name] = {**checks[name](options.output_dir, options.timeout),
                                   "seconds": time.perf_counter() - start}
        print(f"{name}: {'passed' if summary['checks'][name]['passed'] else 'FAILED'}", flush=True)
    (options.output_dir / "gpu_check.json").write_text(json.dumps(summary, indent=1) + "\n")
    (options.output_dir / "gpu_check.md").write_text(markdown(summary))
    print(markdown(summary))
    return summary


if __name__ == "__main__":
    main()
