"""requirements.txt (learners, Colab) and pyproject.toml (pip install) ask for the same versions."""
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def _floors(lines) -> dict[str, str]:
    return {m.group(1).lower(): m.group(2) for line in lines if (m := re.fullmatch(r"\s*([\w-]+)>=([\d.]+)\s*", line))}


def test_requirements_and_pyproject_have_the_same_lower_bounds():
    requirements = _floors((ROOT / "requirements.txt").read_text().splitlines())
    dependencies = _floors(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert dependencies and all(requirements[name] == floor for name, floor in dependencies.items())


def test_the_torch_floor_has_the_apis_the_engine_uses():
    # torch.amp.GradScaler (one scaler for CPU and CUDA) arrived in torch 2.3, with torchvision 0.18.
    requirements = _floors((ROOT / "requirements.txt").read_text().splitlines())
    assert tuple(map(int, requirements["torch"].split("."))) >= (2, 3)
    assert tuple(map(int, requirements["torchvision"].split("."))) >= (0, 18)
