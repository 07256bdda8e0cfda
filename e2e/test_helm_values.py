"""The Helm chart's values: the schema refuses bad values and covers every key, every key is commented and
in the chart README, `config` takes exactly pgkeel's keys, and every `helm install` the READMEs show renders."""


from __future__ import annotations

import json
import re

import pytest
import yaml

from helm_util import (  # helm is a fixture
    CHART, REPO, helm, render_fails, run_helm)


# ---------------------------------------------------------------------------------------------------------
# The schema refuses bad values


@pytest.mark.parametrize("values, expected", [
    ({"mdoe": "standalone"}, "mdoe"),
    ({"config": {"kubernetes_cluster": "x", "probe_intervl": "1s"}}, "probe_intervl"),
    ({"config": {"kubernetes_cluster": "x", "listen_primary": "0.0.0.0:5432"}}, "listen_primary"),
    ({"config": {"kubernetes_cluster": "x"}, "standalone": {"replicas": 3}}, "replicas"),
    ({"mode": "sidecar"}, "mode"),
    ({"config": {"source": "consul"}}, "source"),
    ({"config": {"kubernetes_cluster": "x", "log_level": "verbose"}}, "log_level"),
    ({"config": {"kubernetes_cluster": "x", "probe_interval": "5"}}, "probe_interval"),
    ({"config": {"kubernetes_cluster": "x", "unhealthy_after": 0}}, "unhealthy_after"),
    ({"mode": "sidecar-injector", "sidecarInjector": {"failurePolicy": "Ignored"}}, "failurePolicy"),
    ({"config": {"kubernetes_cluster": "x"}, "standalone": {"replicaCount": "two"}}, "replicaCount"),
    ({"config": {"kubernetes_cluster": "x"}, "rbac": {"sources": ["static"]}}, "sources"),
    ({"config": {"kubernetes_cluster": "x"}, "sidecar": {"config": {"source": "cnpg"}}}, "source"),
    ({"config": {"kubernetes_cluster": "x"}, "metrics": {"serviceMonitor": {"enabeld": True}}}, "enabeld"),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else v)
def test_schema_refuses(helm, tmp_path, values, expected):
    err = render_fails(helm, values, tmp_path)
    assert "values don't meet the specifications of the schema" in err and expected in err, err


def test_lint_strict_refuses_a_typo(helm, tmp_path):
    f = tmp_path / "typo.yaml"
    f.write_text("config:\n  kubernetes_cluster: pg-main\nservicAccount:\n  create: true\n")
    proc = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(f), check=False)
    assert proc.returncode != 0 and "servicAccount" in proc.stdout + proc.stderr


def undescribed(values, schema: dict, path: str = "") -> list[str]:
    """Keys of values the schema does not name (a map whose schema gives additionalProperties a schema, such
    as labels or resource quantities, describes every key)."""
    out = []
    if not isinstance(values, dict):
        return out
    props = schema.get("properties")
    for key, sub in values.items():
        where = f"{path}{key}"
        if props is not None and key in props:
            out += undescribed(sub, props[key], where + ".")
        elif isinstance(schema.get("additionalProperties"), dict):
            out += undescribed(sub, schema["additionalProperties"], where + ".")
        elif props is not None or schema.get("additionalProperties") is False:
            out.append(where)
    return out


def values_paths(node, prefix: str = "") -> set[str]:
    out = set()
    if isinstance(node, dict):
        for key, sub in node.items():
            path = f"{prefix}{key}"
            out.add(path)
            out |= values_paths(sub, path + ".")
    return out


def test_schema_covers_every_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = undescribed(values, schema)
    assert not missing, f"values.yaml keys the schema does not describe: {missing}"

    def closed(node, path):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or 'top level'} accepts unknown keys"
            for key, sub in node["properties"].items():
                closed(sub, f"{path}.{key}" if path else key)
    closed(schema, "")


def catalogue_keys() -> list[str]:
    text = (REPO / "src" / "config" / "keys.cpp").read_text()
    body = text[text.index("std::vector<Key> buildKeys()"):]
    return re.findall(r'(?:listenKey|intKey|durationKey|boolKey|stringKey|Key\{)\(?\s*"([a-z_]+)"', body)


def test_schema_config_keys_are_pgkeels_keys():
    keys = set(catalogue_keys())
    assert {"source", "probe_interval", "log_format", "listen_primary", "drain_delay"} <= keys and len(keys) > 30
    schema = json.loads((CHART / "values.schema.json").read_text())
    config = set(schema["properties"]["config"]["properties"])
    assert config == keys - {"listen_primary", "listen_replica", "admin_listen"}
    sidecar = set(schema["properties"]["sidecar"]["properties"]["config"]["properties"])
    assert sidecar == config - {"source", "kubernetes_cluster", "kubernetes_namespace", "candidates", "patroni_urls"}


KEY_LINE = re.compile(r'^(\s*)(- )?([A-Za-z_][A-Za-z0-9_.-]*):(\s|$)')


def test_every_value_has_a_comment():
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = KEY_LINE.match(line)
        if not m:
            continue
        above = lines[i - 1].strip() if i else ""
        documented = above.startswith("#") or above.startswith("- #") or " # " in line
        if not documented:
            undocumented.append(f"line {i + 1}: {line.strip()}")
    assert not undocumented, "keys without a comment above them:\n" + "\n".join(undocumented)


def test_chart_readme_lists_every_value():
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    listed = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
    missing = values_paths(values) - listed
    assert not missing, f"charts/pgkeel/README.md values table lacks {sorted(missing)}"
    assert f"{'<fullname>'}-rw" in readme and "<fullname>-ro" in readme




# ---------------------------------------------------------------------------------------------------------
# The documentation's helm commands


def documented_installs() -> list[tuple[str, str]]:
    """(file, command) for every `helm install ... charts/pgkeel ...` in README.md and the chart's README."""
    found = []
    for doc in (REPO / "README.md", CHART / "README.md"):
        text = re.sub(r"\\\n\s*", " ", doc.read_text())
        for line in text.splitlines():
            line = line.split("   #")[0].split("  #")[0].strip()
            if line.startswith("helm install ") and "charts/pgkeel" in line:
                found.append((doc.name if doc.parent == REPO else "charts/pgkeel/README.md", line))
    return found


def test_documented_helm_installs_render(helm):
    """Every `helm install` the READMEs show renders (as `helm template`, values schema and the chart's own
    checks included): a user who copies one is not met by an error."""
    import shlex

    commands = documented_installs()
    assert len(commands) >= 3, commands
    for doc, command in commands:
        args = shlex.split(command)[2:]  # after "helm install"
        args = [a for a in args if a != "--create-namespace"]
        args = [str(CHART) if a == "charts/pgkeel" else a for a in args]
        proc = run_helm(helm, "template", *args, check=False)
        assert proc.returncode == 0, f"{doc}: {command}\n{proc.stderr}"
