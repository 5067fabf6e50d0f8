"""How long each committed notebook took to run, read from the timestamps its run left in the file.

    python benchmarks/notebook_times.py            # a Markdown table, one row per notebook

Jupyter records when each code cell started and finished (``metadata.execution``) when a notebook is
executed with nbconvert or JupyterLab. A notebook's wall time here is from the start of its first code
cell to the end of its last, and its device and mode are read from the line ``settings.describe_run``
printed. The numbers describe the run whose outputs are committed, on the machine and with whatever
else was running there at the time; nothing is executed.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Optional

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
RUN_LINE = re.compile(r"device: (\w+) \| torch \S+ \| (full run|reduced run)")


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def wall_seconds(notebook: dict) -> Optional[float]:
    """Seconds from the first code cell's start to the last one's end; None without timestamps."""
    runs = [cell["metadata"]["execution"] for cell in notebook["cells"]
            if cell["cell_type"] == "code" and "iopub.execute_input" in cell["metadata"].get("execution", {})]
    if not runs:
        return None
    return (max(_time(run["shell.execute_reply"]) for run in runs)
            - min(_time(run["iopub.execute_input"]) for run in runs)).total_seconds()


def run_description(notebook: dict) -> str:
    """'cpu, full run' (from the first describe_run line in the outputs), or '' when there is none."""
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            match = RUN_LINE.search("".join(output.get("text", "")))
            if match:
                return f"{match.group(1)}, {match.group(2)}"
    return ""


def main() -> None:
    print("| notebook | wall time of the committed run | device, mode |")
    print("| --- | --- | --- |")
    for path in sorted(NOTEBOOKS_DIR.rglob("*.ipynb")):
        notebook = json.loads(path.read_text())
        seconds = wall_seconds(notebook)
        took = f"{seconds / 60:.1f} min" if seconds is not None else "not committed with outputs"
        print(f"| `{path.relative_to(NOTEBOOKS_DIR.parent)}` | {took} | {run_description(notebook)} |")


if __name__ == "__main__":
    main()
