"""Fixtures shared by the unit tests."""
import matplotlib.pyplot as plt
import pytest


@pytest.fixture(autouse=True)
def close_figures():
    """Close every matplotlib figure a test opened, so figures never pile up across tests."""
    yield
    plt.close("all")
