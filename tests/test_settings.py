"""The one place that decides where data and figures live, and whether a run is reduced."""
from pathlib import Path

import pytest

from going_modular.common import settings


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("ON", True), ("0", False), ("", False)])
def test_reduced_run_switch(monkeypatch, value, expected):
    monkeypatch.setenv(settings.REDUCED_RUN_ENV, value)
    assert settings.is_reduced_run() is expected
    assert ("reduced run" in settings.describe_run("cpu")) is expected
    assert settings.describe_run("cpu").startswith("device: cpu | torch ")


def test_data_and_images_dirs_inside_a_checkout(monkeypatch):
    monkeypatch.delenv(settings.DATA_DIR_ENV, raising=False)
    monkeypatch.delenv(settings.REDUCED_RUN_ENV, raising=False)
    root = settings.get_repository_root()
    assert root is not None and (root / "going_modular").is_dir()
    assert settings.get_data_dir() == root / "data"
    assert settings.get_images_dir() == root / "images"
    assert settings.get_models_dir() == root / "models"


def test_outside_a_checkout_data_goes_to_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv(settings.DATA_DIR_ENV, raising=False)
    monkeypatch.delenv(settings.REDUCED_RUN_ENV, raising=False)
    monkeypatch.setattr(settings, "get_repository_root", lambda: None)
    monkeypatch.chdir(tmp_path)
    assert settings.get_data_dir() == tmp_path / "data"
    assert settings.get_images_dir() == tmp_path / "images" and (tmp_path / "images").is_dir()


def test_a_reduced_run_never_writes_over_committed_figures_or_saved_models(monkeypatch):
    monkeypatch.setenv(settings.REDUCED_RUN_ENV, "1")
    root = settings.get_repository_root()
    for folder in (settings.get_images_dir(), settings.get_models_dir()):
        assert folder.is_dir() and root not in folder.parents


def test_display_path_hides_the_folders_of_the_machine_inside_the_repository(tmp_path):
    root = settings.get_repository_root()
    assert settings.display_path(root / "data" / "pizza_steak_sushi") == str(Path("data") / "pizza_steak_sushi")
    assert settings.display_path(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")
