"""pytest configuration for the whole repository.

Notebooks run under nbval in their reduced mode (going_modular.common.settings.is_reduced_run): the kernels
nbval starts inherit this environment variable, so they train on a few batches instead of for hours.
"""
import os

from going_modular.common.settings import REDUCED_RUN_ENV

os.environ.setdefault(REDUCED_RUN_ENV, "1")
