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


def prepare(args: argparse.Namespace) -> tuple[chart_values.Values, list[str], list[Obj]]:
    """Values -> passwords -> objects, from the command line alone: what it does not set is generated
    anew (the passwords and TLS pair a cluster keeps live in its platform, never read here). Also the
    values keys whose secrets were generated."""
    values = chart_values.load(args.values_files, args.sets)
    passwords, _ = secrets.merge(values, {})
    generated = [f"auth.{key}" for key in secrets.KEYS if not values["auth"][key]]
    generated += [] if values["tls"]["existingSecret"] else ["the TLS pair (tls.existingSecret unset)"]
    return values, generated, chart_render.render(values, passwords)


def render_cmd(args: argparse.Namespace) -> int:
    out_dir = Path(args.output_dir) if args.output_dir else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"--output-dir: {out_dir} exists and is not a directory")
    _, generated, objects = prepare(args)
    if out_dir is None:
        sys.stdout.write(chart_render.to_stream(objects))
    else:
        for path in chart_render.write_dir(objects, out_dir):
            print(path, file=sys.stderr)
    if generated:
        print(f"generated {', '.join(generated)}: each render makes new ones; apply its Secret to a new cluster "
              "only (docs/secrets.md)", file=sys.stderr)
    return 0


def validate_cmd(args: argparse.Namespace) -> int:
    values, _, objects = prepare(args)
    versions = chart_values.kubernetes_versions(values)
    from mysqlsts.chart import kubeschema  # the bundled API schemas load slowly; only validate needs them

    problems = kubeschema.problems(objects, versions)
    if problems:
        raise BadInput(problems)
    print(f"values valid; {len(objects)} objects valid against Kubernetes {', '.join(versions)}")
    return 0
