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


def test_requirements_hold_the_deploy_extra_that_notebook_08_and_its_tests_need():
    # The README's set-up is `pip install -r requirements.txt && pip install -e .`: without these, notebook 08 and
    # tests/test_deploy.py could not run after it.
    requirements = _floors((ROOT / "requirements.txt").read_text().splitlines())
    deploy = _floors(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["deploy"])
    assert deploy and all(requirements.get(name) == floor for name, floor in deploy.items())
