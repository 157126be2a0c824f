"""render and validate: values in, Kubernetes objects out, nothing touched but the output."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mysqlsts.chart import render as chart_render
from mysqlsts.chart import secrets
from mysqlsts.chart import values as chart_values
from mysqlsts.chart.render import Obj
from mysqlsts.errors import BadInput
from mysqlsts.state import cluster_dir, state_root


def prepare(args: argparse.Namespace, persist: bool) -> tuple[chart_values.Values, dict[str, str], list[Obj]]:
    """Values -> passwords -> objects. Nothing is written unless every step succeeded and `persist`."""
    values = chart_values.load(args.values_files, args.sets)
    store = cluster_dir(state_root(getattr(args, "state_dir", None)), values["name"]) / secrets.SECRET_FILE
    passwords, changed = secrets.resolve(values, store)
    objects = chart_render.render(values, passwords)
    if persist and changed:
        secrets.save(store, passwords)
    return values, passwords, objects


def render_cmd(args: argparse.Namespace) -> int:
    out_dir = Path(args.output_dir) if args.output_dir else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"--output-dir: {out_dir} exists and is not a directory")
    _, _, objects = prepare(args, persist=True)
    if out_dir is None:
        sys.stdout.write(chart_render.to_stream(objects))
    else:
        for path in chart_render.write_dir(objects, out_dir):
            print(path, file=sys.stderr)
    return 0


def validate_cmd(args: argparse.Namespace) -> int:
    values, _, objects = prepare(args, persist=False)
    versions = chart_values.kubernetes_versions(values)
    from mysqlsts.chart import kubeschema  # the bundled API schemas load slowly; only validate needs them

    problems = kubeschema.problems(objects, versions)
    if problems:
        raise BadInput(problems)
    print(f"values valid; {len(objects)} objects valid against Kubernetes {', '.join(versions)}")
    return 0
