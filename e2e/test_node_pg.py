"""node-postgres (the npm `pg` driver, its own protocol code) works through both pgkeel ports."""

import json
import os
import shutil
import subprocess

import pytest

NODE_DIR = os.path.join(os.path.dirname(__file__), "node")


def run_client(port: int) -> dict:
    res = subprocess.run(["node", os.path.join(NODE_DIR, "client.js"), str(port)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


@pytest.fixture(scope="module", autouse=True)
def node_modules():
    """The driver comes from the npm registry, pinned by package-lock.json (scripts/test.sh runs npm ci)."""
    if shutil.which("node") is None:
        pytest.fail("node is not installed: run scripts/install-deps.sh", pytrace=False)
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "pg")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True,
                       capture_output=True, timeout=300)


@pytest.mark.parametrize("role", ["primary", "replica"])
def test_node_postgres_through_port(pgkeel, cluster, role):
    """Extended-protocol parameters, a 20 MB result, an error, a notice and a CancelRequest behave as
    directly, and each lands on the node its port promises."""
    port = pgkeel.primary_port if role == "primary" else pgkeel.replica_port
    out = run_client(port)
    assert out["inRecovery"] is (role == "replica")
    assert out["serverPort"] == (cluster.primary_port if role == "primary" else cluster.replica_port)
    assert (out["sum"], out["text"]) == (42, "héllo")
    assert (out["bigRows"], out["bigBytes"]) == (20000, 20000 * 1000)
    assert out["errorCode"] == "22012"
    assert out["notices"] == ["hello from pgkeel"]
    assert out["afterError"] == 7
    assert out["cancel"]["code"] == "57014", out["cancel"]
    assert out["cancel"]["seconds"] < 5
    assert out["afterCancel"] == 8
