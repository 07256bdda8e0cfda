"""The container image's runtime stage: scripts/check-runtime-libs.py passes for the built pgkeel and the
Dockerfile, and fails, naming the package, when a library or a Dockerfile rule is missing."""

import os
import re
import subprocess
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK = [os.path.join(ROOT, "scripts/check-runtime-libs.py")]
DOCKERFILE = os.path.join(ROOT, "Dockerfile")


def check(binary: str, dockerfile: str = DOCKERFILE) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/bin/python3", *CHECK, binary, dockerfile], capture_output=True, text=True,
                          timeout=120)


def test_runtime_stage_has_every_library(pgkeel_bin):
    """Every library ldd resolves for pgkeel comes from a runtime package or their dependencies."""
    res = check(pgkeel_bin)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "libpq.so.5" in res.stdout and "libpq5" in res.stdout
    assert res.stdout.rstrip().endswith(" 0 problem(s)")


def test_missing_library_package_is_named():
    """psql links libreadline, which the runtime stage does not install: the check fails naming the package."""
    res = check("/usr/lib/postgresql/15/bin/psql")
    assert res.returncode == 1
    assert "libreadline.so.8: the binary links it directly, from libreadline8; add libreadline8 to RUNTIME" in res.stdout


def test_dockerfile_rules(pgkeel_bin, tmp_path):
    """A runtime stage that runs as root, installs its own packages and exposes no admin port is refused."""
    text = open(DOCKERFILE).read()
    assert "USER 65532:65532" in text and "EXPOSE 6432 6433 9432" in text
    bad = tmp_path / "Dockerfile"
    bad.write_text(text.replace("USER 65532:65532", "USER root")
                   .replace("EXPOSE 6432 6433 9432", "EXPOSE 6432 6433")
                   .replace("bash /tmp/install-deps.sh --runtime", "apt-get install -y libpq5"))
    res = check(pgkeel_bin, str(bad))
    assert res.returncode == 1
    for problem in ("does not run `install-deps.sh --runtime`", "installs packages besides",
                    "numeric non-root USER", "does not EXPOSE 9432"):
        assert problem in res.stdout, (problem, res.stdout)


def test_runtime_stage_serves_read_only_as_non_root(cluster, pgkeel_bin, tmp_path):
    """The runtime stage built as a directory (no Docker engine here: scripts/runtime-rootfs.sh, debootstrap
    minbase + `install-deps.sh --runtime` + the binary) runs pgkeel from a read-only root as user 65532:
    both ports answer from the right node, /readyz is 200, and SIGTERM ends it cleanly."""
    import signal

    from pgcluster import HOST, Pgkeel, query

    if os.geteuid() != 0:
        pytest.fail("needs root (debootstrap, chroot, mount namespaces), as CI runs", pytrace=False)
    rootfs = os.path.join(ROOT, "build", "runtime-rootfs")
    subprocess.run(["bash", os.path.join(ROOT, "scripts/runtime-rootfs.sh"), rootfs, pgkeel_bin], check=True,
                   capture_output=True, timeout=600)
    wrapper = tmp_path / "pgkeel-in-image"
    wrapper.write_text(f"#!/bin/sh\nexec {ROOT}/scripts/runtime-rootfs-run.sh {rootfs} \"$@\"\n")
    wrapper.chmod(0o755)
    candidates = f"{HOST}:{cluster.primary_port},{HOST}:{cluster.replica_port}"
    pk = Pgkeel(candidates, tmp_path / "pgkeel.log", binary=str(wrapper)).start()
    child = []
    try:
        assert query(pk.primary_port, "select pg_is_in_recovery()") == "f"
        assert query(pk.replica_port, "select pg_is_in_recovery()") == "t"
        child += subprocess.run(["pgrep", "-P", str(pk.proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(child) == 1, child
        status = open(f"/proc/{child[0]}/status").read()
        assert re.search(r"^Uid:\s+65532\s+65532", status, re.M), status
        root_mount = next(line for line in open(f"/proc/{child[0]}/mountinfo") if line.split()[4] == "/")
        assert " ro," in f" {root_mount.split()[5]},", root_mount
        assert os.readlink(f"/proc/{child[0]}/exe") == rootfs + "/usr/local/bin/pgkeel"
        with urllib.request.urlopen(pk.admin_url("/readyz"), timeout=5) as resp:
            assert resp.status == 200
    finally:
        # unshare --fork holds SIGTERM back from itself; the signal goes to pgkeel, as a container's would.
        os.kill(int(child[0]), signal.SIGTERM) if child else pk.proc.kill()
        assert pk.proc.wait(timeout=15) == 0, pk.log_tail()
