"""The pgkeel command line as users meet it: --version, --check-config, bad flags, CANDIDATES, JSON logs."""

import json
import re
import subprocess

from e2e_util import identity
from pgcluster import client_env


def run(pgkeel_bin, *args, env=None):
    return subprocess.run([pgkeel_bin, *args], capture_output=True, text=True, timeout=20,
                          env=client_env(**(env or {})), stdin=subprocess.DEVNULL)


def test_version(pgkeel_bin):
    """--version prints a version number and exits 0."""
    res = run(pgkeel_bin, "--version")
    assert res.returncode == 0, res.stderr
    assert re.search(r"\d+\.\d+\.\d+", res.stdout + res.stderr)


def test_bad_flags_all_reported_at_once(pgkeel_bin):
    """Two bad values (a duration without unit, a non-boolean) exit non-zero and both problems are printed,
    each naming its flag or key; nothing is left listening."""
    res = run(pgkeel_bin, "--candidates", "127.0.0.1:1", "--probe-interval", "200", "--replica-fallback", "maybe",
              "--listen-primary", "127.0.0.1:0", "--listen-replica", "")
    assert res.returncode != 0
    text = res.stdout + res.stderr
    assert re.search(r"probe[-_]interval", text), text
    assert re.search(r"replica[-_]fallback", text), text


def test_missing_candidates_is_an_error(pgkeel_bin):
    """Without --candidates or CANDIDATES pgkeel refuses to start and says what is missing."""
    res = run(pgkeel_bin, "--listen-primary", "127.0.0.1:0", "--listen-replica", "")
    assert res.returncode != 0
    assert "candidates" in (res.stdout + res.stderr).lower()


def test_check_config(pgkeel_bin, tmp_path):
    """--check-config: a valid YAML file exits 0; a file with two bad keys exits 1 naming both keys and lines."""
    good = tmp_path / "good.yaml"
    good.write_text("candidates: [\"127.0.0.1:5432\", \"127.0.0.1:5433\"]\nprobe_interval: 500ms\n"
                    "replica_fallback: false\n")
    res = run(pgkeel_bin, "--check-config", str(good))
    assert res.returncode == 0, res.stdout + res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("candidates: \"127.0.0.1:5432\"\nprobe_interval: 5\nno_such_key: 1\n")
    res = run(pgkeel_bin, "--check-config", str(bad))
    text = res.stdout + res.stderr
    assert res.returncode == 1, text
    assert "probe_interval" in text and "no_such_key" in text, text
    assert re.search(r"\b2\b", text) and re.search(r"\b3\b", text), f"line numbers missing: {text}"


def test_candidates_from_environment(pgkeel_factory, cluster):
    """CANDIDATES="h:p,h:p" in the environment, no --candidates flag: both ports route as with the flag."""
    pk = pgkeel_factory(cluster, env={"CANDIDATES": cluster.candidates}, pass_candidates_flag=False,
                        wait_replica=True)
    assert "--candidates" not in pk.argv()
    assert identity(pk.dsn("primary")) == (False, cluster.primary_port)
    assert identity(pk.dsn("replica")) == (True, cluster.replica_port)


def test_flag_equals_form(pgkeel_factory, cluster):
    """--flag=value works like --flag value (here for every flag pgkeel is started with)."""
    pk = pgkeel_factory(cluster, equals_form=True, wait_replica=True)
    assert all("=" in arg for arg in pk.argv()[1:])
    assert identity(pk.dsn("primary")) == (False, cluster.primary_port)
    assert identity(pk.dsn("replica")) == (True, cluster.replica_port)


def test_json_log_format(pgkeel_factory, cluster):
    """--log-format json: after serving a session and a clean stop, every stderr line is one JSON object."""
    pk = pgkeel_factory(cluster, flags={"log_format": "json"})
    assert identity(pk.dsn("primary")) == (False, cluster.primary_port)
    pk.expect_exit = True
    assert pk.stop() == 0
    lines = [line for line in pk.log_text().splitlines() if line and not line.startswith("+ ")]
    assert lines, "no log output at debug level"
    for line in lines:
        assert isinstance(json.loads(line), dict), line
