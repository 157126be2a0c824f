"""Integration scenarios written once, run against every target through the CLI:
`local` always (real servers on this machine), `kind` when asked for with
MYSQLSTS_KIND=1 (scripts/kind-e2e.sh does that on a machine with Docker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

KIND_SKIP = ("kind not requested: run scripts/kind-e2e.sh on a machine with Docker (it sets MYSQLSTS_KIND=1); "
             "this suite's own CI machine has no container engine, so kind cannot run there")


@dataclass
class Target:
    name: str
    options: list[str]  # how every command finds the cluster
    sets: list[str] = field(default_factory=list)  # bootstrap values for this target
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mysqlsts", *args, *self.options], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **self.env})

    def ok(self, *args: str) -> subprocess.CompletedProcess:
        result = self.run(*args)
        assert result.returncode == 0, f"{' '.join(args)}: exit {result.returncode}\n{result.stderr[-4000:]}"
        return result


def local_target(tmp: Path) -> Target:
    return Target("local", ["--target", "local", "--state-dir", str(tmp / "state"), "--name", "e2e"],
                  ["--set", "flavor=mariadb"])


def kind_target() -> Target:
    flavor = os.environ.get("MYSQLSTS_FLAVOR", "mysql")
    namespace = f"mysqlsts-e2e-{flavor}"
    context = os.environ.get("MYSQLSTS_KIND_CONTEXT", "kind-mysqlsts")
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(context=context))
    try:
        api.create_namespace({"metadata": {"name": namespace}})
    except client.ApiException as e:
        if e.status != 409:
            raise
    image = os.environ.get("MYSQLSTS_IMAGE", "mysqlsts/mysqlsts:e2e")
    return Target("kind", ["--target", "kubernetes", "--context", context, "-n", namespace, "--name", "e2e"],
                  ["--set", f"flavor={flavor}", "--set", f"images.tools={image}",
                   "--set", "images.pullPolicy=IfNotPresent"])


@pytest.fixture(params=[
    pytest.param("local", marks=pytest.mark.servers),
    pytest.param("kind", marks=[pytest.mark.kind,
                                pytest.mark.skipif(os.environ.get("MYSQLSTS_KIND") != "1", reason=KIND_SKIP)]),
])
def target(request, tmp_path):
    t = local_target(tmp_path) if request.param == "local" else kind_target()
    try:
        yield t
    finally:
        t.run("destroy", "--delete-data", timeout=600)


def healthy(result: subprocess.CompletedProcess) -> dict:
    report = json.loads(result.stdout)
    assert report["healthy"], [c for c in report["checks"] if not c["ok"]]
    return report


def roles(t: Target) -> dict[str, str]:
    status = json.loads(t.ok("status", "-o", "json").stdout)
    return {p["pod"]: p["role"] for p in status["pods"]}


def test_lifecycle(target):
    report = healthy(target.ok("bootstrap", *target.sets, "--replicas", "3", "-o", "json"))
    names = {c["name"] for c in report["checks"]}
    assert "canary row on e2e-2 via e2e-2.e2e." in " ".join(names)  # read back over per-pod DNS
    assert roles(target) == {"e2e-0": "primary", "e2e-1": "replica", "e2e-2": "replica"}

    again = target.ok("bootstrap", "-o", "json")
    healthy(again)
    assert "nothing to change" in again.stderr

    healthy(target.ok("restart-pod", "e2e-1", "-o", "json"))
    healthy(target.ok("restart-pod", "e2e-0", "-o", "json"))
    assert roles(target)["e2e-0"] == "primary"  # no failover yet: it comes back as primary with its data

    healthy(target.ok("scale", "--replicas", "4", "-o", "json"))
    assert sorted(roles(target).values()) == ["primary", "replica", "replica", "replica"]
    healthy(target.ok("scale", "--replicas", "3", "-o", "json"))
    assert len(roles(target)) == 3
