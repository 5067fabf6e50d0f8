"""The guides' code runs as written: "Your own photos" on a small generated dataset of four classes."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from going_modular import pretrained
from going_modular.common import settings

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guides" / "your_own_photos.md"


def _shapes(folder: Path, count: int, offset: int) -> None:
    """Four classes of drawn shapes on a plain background, each photo a little different."""
    for name in ("circle", "square", "triangle", "cross"):
        (folder / name).mkdir(parents=True)
        for index in range(count):
            image = Image.new("RGB", (160 + 7 * index, 140), (235, 230 - 5 * index, 220))
            draw, size = ImageDraw.Draw(image), 40 + 5 * ((index + offset) % 4)
            box = (50, 40, 50 + size, 40 + size)
            {"circle": lambda: draw.ellipse(box, fill=(200, 30, 30)),
             "square": lambda: draw.rectangle(box, fill=(30, 30, 200)),
             "triangle": lambda: draw.polygon([(50, 40 + size), (50 + size, 40 + size), (50 + size // 2, 40)],
                                              fill=(30, 160, 30)),
             "cross": lambda: (draw.line((50, 40, 50 + size, 40 + size), fill=(0, 0, 0), width=8),
                               draw.line((50, 40 + size, 50 + size, 40), fill=(0, 0, 0), width=8))}[name]()
            image.save(folder / name / f"{index}.jpg")


def test_the_your_own_photos_guide_runs_as_written(tmp_path):
    weights = pretrained.pretrained_weights_path()
    if not weights.is_file():
        pytest.skip(f"The ViT-Ti/16 weights are not at {weights}; .ci/run stages them from ../shared/weights/.")
    (code,) = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    _shapes(tmp_path / "my_photos" / "train", 10, 0)
    _shapes(tmp_path / "my_photos" / "test", 3, 1)
    check = ('\nassert class_names == ["circle", "cross", "square", "triangle"]'
             '\nassert results["test_acc"][-1] >= 0.75\n')
    environment = {**os.environ, "MPLBACKEND": "Agg", settings.WEIGHTS_DIR_ENV: str(weights.parent)}
    environment.pop("PYTHONPATH", None)
    completed = subprocess.run([sys.executable, "-c", code + check], cwd=tmp_path, env=environment,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (tmp_path / "models" / "my_photos_vit_ti.pth").is_file()


def test_the_chinese_guide_runs_the_same_code():
    pattern = re.compile(r"```python\n(.*?)```", re.DOTALL)
    chinese = GUIDE.with_name("your_own_photos.zh-CN.md").read_text(encoding="utf-8")
    assert pattern.findall(chinese) == pattern.findall(GUIDE.read_text())


def test_the_weights_folder_is_documented_where_a_learner_looks():
    entry = pretrained.PRETRAINED_WEIGHTS["vit_ti_16_augreg"]
    for guide in ("data_and_offline.md", "package.md", "your_own_photos.md"):
        text = (ROOT / "docs" / "guides" / guide).read_text()
        assert settings.WEIGHTS_DIR_ENV in text, guide
    offline = (ROOT / "docs" / "guides" / "data_and_offline.md").read_text()
    assert entry.file_name in offline and "working directory" in offline
