"""psql scripts give byte-identical stdout and stderr directly and through pgkeel (both ports)."""

import hashlib
import re
import subprocess

import pytest

from pgcluster import client_env

ROWS = 10_000


def copy_rows() -> str:
    """10k COPY text-format rows with tabs, backslashes, NULLs and non-ASCII text."""
    lines = []
    for i in range(1, ROWS + 1):
        note = "\\N" if i % 97 == 0 else f"row {i} \\t tab \\\\ backslash ünïcødé €{i % 13}"
        lines.append(f"{i}\t{note}\t{i * 1.5}")
    return "\n".join(lines) + "\n\\.\n"


COMMON = r"""
\echo === routing
SELECT pg_is_in_recovery();
\echo === large result (~20 MB)
SELECT g, repeat(md5(g::text), 6) AS filler FROM generate_series(1, 100000) g;
\echo === notices from a DO block
DO $$
BEGIN
  RAISE NOTICE 'notice one: %', 42;
  RAISE WARNING 'a warning with detail' USING DETAIL = 'some detail', HINT = 'a hint';
  FOR i IN 1..3 LOOP RAISE NOTICE 'loop %', i; END LOOP;
END $$;
\echo === deliberate errors, then carry on
SELECT 1/0;
SELEC 'syntax error here';
SELECT no_such_column FROM pg_class LIMIT 1;
SELECT 'still alive after errors' AS status;
\echo === several statements in one Query message
SELECT 1 AS a \; SELECT 2 AS b \; SELECT 'three' AS c;
\echo === COPY TO STDOUT
COPY (SELECT g, md5(g::text), g % 7 = 0 FROM generate_series(1, 5000) g) TO STDOUT;
COPY (SELECT g AS n, 'quoted, "text"' AS t FROM generate_series(1, 100) g) TO STDOUT WITH (FORMAT csv, HEADER);
\echo === settings and a prepared statement
SET application_name = 'e2e-script';
SHOW application_name;
PREPARE q(int) AS SELECT $1 * 2;
EXECUTE q(21);
DEALLOCATE q;
"""

WRITABLE = r"""
\echo === COPY FROM STDIN (10k rows)
CREATE TEMP TABLE items(id int PRIMARY KEY, note text, price numeric);
COPY items FROM STDIN;
{rows}SELECT count(*), sum(id), count(note), md5(string_agg(coalesce(note, '-'), ',' ORDER BY id)) FROM items;
COPY (SELECT * FROM items WHERE id % 1000 = 0 ORDER BY id) TO STDOUT;
\echo === multi-statement transaction with a savepoint
BEGIN;
INSERT INTO items VALUES (100001, 'in tx', 1);
SAVEPOINT s1;
INSERT INTO items VALUES (1, 'duplicate key', 1);
ROLLBACK TO SAVEPOINT s1;
UPDATE items SET price = price + 1 WHERE id <= 10;
SELECT count(*), sum(price) FROM items;
COMMIT;
\echo === an aborted transaction
BEGIN;
SELECT 1/0;
SELECT 'ignored because aborted';
ROLLBACK;
SELECT count(*) FROM items WHERE note = 'in tx';
"""

READ_ONLY = r"""
\echo === writes fail on a replica
CREATE TABLE should_fail(x int);
\echo === read-only multi-statement transaction with a savepoint
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM pg_class WHERE relname = 'pg_class';
SAVEPOINT s1;
SELECT 1/0;
ROLLBACK TO SAVEPOINT s1;
SELECT 'after rollback to savepoint';
COMMIT;
\echo === an aborted transaction
BEGIN;
SELECT 1/0;
SELECT 'ignored because aborted';
ROLLBACK;
"""


def run_script(path, port):
    """psql -f path against port; returns (returncode, stdout bytes, stderr bytes)."""
    res = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=0", "-h", "127.0.0.1", "-p", str(port),
                          "-U", "postgres", "-d", "postgres", "-f", str(path)],
                         capture_output=True, timeout=120, env=client_env(PGCONNECT_TIMEOUT="10"))
    return res.returncode, res.stdout, res.stderr


def first_difference(a: bytes, b: bytes) -> str:
    la, lb = a.splitlines(), b.splitlines()
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            return f"line {i + 1}: direct {x[:200]!r} vs pgkeel {y[:200]!r}"
    return f"one output is a prefix of the other: {len(la)} vs {len(lb)} lines"


PORT_MENTION = re.compile(rb"(port[ =]\"?)\d+")


def normalise_ports(text: bytes) -> bytes:
    """The only normalisation: a port number where a message quotes one ("port 5432", "port=5432")."""
    return PORT_MENTION.sub(rb"\1PORT", text)


def compare(direct, proxied):
    rc_d, out_d, err_d = (direct[0], normalise_ports(direct[1]), normalise_ports(direct[2]))
    rc_p, out_p, err_p = (proxied[0], normalise_ports(proxied[1]), normalise_ports(proxied[2]))
    assert rc_p == rc_d
    assert err_p == err_d, "stderr differs: " + first_difference(err_d, err_p)
    assert len(out_p) == len(out_d) and hashlib.sha256(out_p).digest() == hashlib.sha256(out_d).digest(), \
        "stdout differs: " + first_difference(out_d, out_p)


@pytest.mark.parametrize("role", ["primary", "replica"])
def test_psql_script_identical_through_pgkeel(role, pgkeel, cluster, tmp_path):
    """The same psql script (COPY in/out, a ~20 MB result, notices, errors with ON_ERROR_STOP=0, transactions)
    prints exactly the same stdout and stderr, and exits the same, directly on the node and through pgkeel."""
    script = tmp_path / f"script-{role}.sql"
    body = COMMON + (WRITABLE.replace("{rows}", copy_rows()) if role == "primary" else READ_ONLY)
    script.write_text(body, encoding="utf-8")
    direct_port = cluster.port(role)
    direct = run_script(script, direct_port)
    proxied = run_script(script, pgkeel.port(role))

    # The direct run itself must exercise what we claim, or the comparison proves nothing.
    rc, out, err = direct
    assert rc == 0, err.decode(errors="replace")[-2000:]
    assert len(out) > 20_000_000
    assert (b" f\n" if role == "primary" else b" t\n") in out.split(b"=== large result")[0]
    assert b"NOTICE:  notice one: 42" in err and b"WARNING:  a warning with detail" in err
    assert b"ERROR:  division by zero" in err and b"still alive after errors" in out
    if role == "primary":
        assert b"COPY 10000\n" in out and b" 10000 | 50005000 |  9897 | " in out
        assert b"duplicate key value violates unique constraint" in err
    else:
        assert b"cannot execute CREATE TABLE in a read-only transaction" in err

    compare(direct, proxied)
