"""Where the chart lives: inside an installed wheel, or beside the package in a checkout."""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def chart_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_chart", here.parent / "charts" / "mysql-sts"):
        if (candidate / "values.yaml").is_file():
            return candidate
    raise FileNotFoundError("the mysql-sts chart is missing from this installation")


def scripts_dir() -> Path:
    return chart_dir() / "scripts"
