"""benchmarks/distill.py end to end on generated photos: teachers, then students taught by their seed's teacher,
scored head by head, reported beside the data sweep's students without a teacher, and archived."""
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # as when a benchmark runs as a script
import distill  # noqa: E402


def _photos(folder: Path, count: int) -> Path:
    for index, colour in enumerate(((200, 30, 40), (30, 200, 40), (30, 40, 200))):
        (folder / f"class{index}").mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (48, 40), tuple(c + 9 * i for c in colour)).save(folder / f"class{index}" / f"{i}.jpg")
    return folder


def test_a_tiny_distillation_benchmark_trains_scores_reports_and_archives(tmp_path):
    data_dir = tmp_path / "data"
    _photos(data_dir / "train", 6), _photos(data_dir / "test", 2)
    val_dir = _photos(tmp_path / "val", 2)
    output_dir, archive = tmp_path / "runs", tmp_path / "archive"
    table = distill.main(["--students", "hybrid", "--kinds", "hard", "--seeds", "0", "--photos", "18", "--epochs", "1",
                          "--data-dir", str(data_dir), "--val-dir", str(val_dir), "--output-dir", str(output_dir),
                          "--archive", str(archive), "--threads", "1", "--", "--max-batches", "1"])
    student = json.loads((output_dir / "hybrid_hard" / "n18_seed0_results.json").read_text())
    assert student["config"]["distill"] == "hard"
    assert student["config"]["teacher"] == str(output_dir / "teacher" / "n18_seed0.pth")
    heads = json.loads((output_dir / "hybrid_hard" / "n18_seed0_heads.json").read_text())
    for split, photos in (("val", 6), ("test", 6)):
        scores = heads[split]
        assert set(scores) == {"class", "distillation", "average", "teacher", "agreement", "student_only",
                               "teacher_only"}
        assert all(0 <= scores[key] <= 1 for key in ("class", "distillation", "average", "teacher", "agreement"))
        assert len(scores["student_only"]) - len(scores["teacher_only"]) == round(
            (scores["average"] - scores["teacher"]) * photos)
    # The model predicts with the average of its heads: what it scored on validation.
    assert heads["val"]["average"] == pytest.approx(student["metrics"]["val_acc"][-1])
    rows = {line.split(" | ")[0].strip("| ") for line in table.splitlines()[2:]}
    assert rows == {"ResNet-18 teacher", "vit, no teacher", "hybrid, no teacher", "hybrid, hard"}
    assert (archive / "hybrid_hard" / "n18_seed0_heads.json").exists()
    assert "steps" not in json.loads((archive / "teacher" / "n18_seed0_results.json").read_text())
    assert distill.report(archive) == table  # the archive gives the same table


def test_the_results_readme_shows_the_archived_distillation_runs():
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    assert distill.report(ROOT / "benchmarks" / "results" / "distill") in readme
