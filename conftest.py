"""pytest configuration for the whole repository.

Notebooks run under nbval in their reduced mode (going_modular.common.settings.is_reduced_run): the kernels
nbval starts inherit this environment variable, so they train on a few batches instead of for hours.
"""
import os

from going_modular.common.settings import REDUCED_RUN_ENV

os.environ.setdefault(REDUCED_RUN_ENV, "1")

# The Chinese edition shares the English notebooks' code cell for cell (tests/test_translations.py checks it), so
# one of its notebooks runs under nbval, to prove that the built files execute; the others would repeat the English.
collect_ignore_glob = ["notebooks/zh-CN/0[02-9]*.ipynb", "notebooks/zh-CN/exercises/*", "notebooks/zh-CN/solutions/*"]
