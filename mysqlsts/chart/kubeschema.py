"""Check rendered objects against the Kubernetes OpenAPI schemas bundled with kubernetes-validate."""

from __future__ import annotations

import kubernetes_validate

from mysqlsts.chart.render import Obj


def problems(objects: list[Obj], versions: list[str]) -> list[str]:
    """One line per object and version that the API server would reject (strict: unknown fields too)."""
    out = []
    for version in versions:
        for obj in objects:
            where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.absolute_path) or "(object)"
                out.append(f"{where} (Kubernetes {version}): {path}: {e.message}")
            except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.utils.VersionNotSupportedError) as e:
                out.append(f"{where} (Kubernetes {version}): {e.message}")
    return out
