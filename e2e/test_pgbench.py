"""pgbench through pgkeel: every query mode on the primary port, select-only on the replica port, no failures."""

import re
import subprocess

import pytest

from pgcluster import client_env


@pytest.fixture(scope="module")
def pgbench_tables(cluster):
    """pgbench -i directly on the primary, replayed on the replica before any test reads it."""
    res = subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p", str(cluster.primary_port),
                          "-U", "postgres", "postgres"], capture_output=True, text=True, timeout=120, env=client_env())
    assert res.returncode == 0, res.stderr
    cluster.wait_caught_up()
    yield
    subprocess.run(["pgbench", "-i", "-I", "d", "-h", "127.0.0.1", "-p", str(cluster.primary_port),
                    "-U", "postgres", "postgres"], capture_output=True, timeout=60, env=client_env())


def run_pgbench(port, *args):
    cmd = ["pgbench", "-n", "-T", "3", "-c", "4", "-j", "2", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
           *args, "postgres"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=client_env())
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{' '.join(cmd)} exited {res.returncode}:\n{out[-3000:]}"
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    assert processed and failed, out
    assert int(failed.group(1)) == 0, out
    assert int(processed.group(1)) > 100, out
    return out


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_tpcb_through_primary_port(mode, pgbench_tables, pgkeel):
    """pgbench -M simple|extended|prepared (TPC-B-like writes) for 3 s through the primary port: exit 0,
    0 failed transactions, a plausible number of transactions."""
    run_pgbench(pgkeel.primary_port, "-M", mode)


def test_pgbench_select_only_through_replica_port(pgbench_tables, pgkeel, cluster):
    """pgbench -S -M prepared for 3 s through the replica port: exit 0, 0 failed transactions; the sessions
    really were on the replica (pg_stat_database on the replica counted the transactions)."""
    def replica_xacts():
        return int(subprocess.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(cluster.replica_port),
                                   "-U", "postgres", "-c", "select pg_stat_force_next_flush(); "
                                   "select xact_commit from pg_stat_database where datname = 'postgres'", "postgres"],
                                  capture_output=True, text=True, timeout=30, env=client_env()).stdout.split()[-1])
    before = replica_xacts()
    out = run_pgbench(pgkeel.replica_port, "-S", "-M", "prepared")
    processed = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
    assert replica_xacts() - before >= processed * 0.9
