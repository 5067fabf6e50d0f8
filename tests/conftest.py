"""Fixtures shared by the unit tests."""
import matplotlib
import pytest

matplotlib.use("Agg")  # no windows: every test draws off screen; set before pyplot is first imported

import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    """Close every matplotlib figure a test opened, so figures never pile up across tests."""
    yield
    plt.close("all")
