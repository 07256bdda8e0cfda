"""The container image's runtime stage: scripts/check-runtime-libs.py passes for the built pgkeel and the
Dockerfile, and fails, naming the package, when a library or a Dockerfile rule is missing."""

import os
import re
import subprocess
import urllib.request

import pytest

from test_k8s_manifests import REPO_ROOT, run

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


# ---------------------------------------------------------------------------------------------------------
# The image's build context: .dockerignore (the Dockerfile's build stage does `COPY . .`)


def dockerignore_regex(pattern: str) -> str:
    """A .dockerignore pattern as Docker matches it (moby/patternmatcher): `*` and `?` stay within one path
    element, `**` spans any number of them (`**/` also none), a pattern is cleaned and loses a leading `/`."""
    pattern = os.path.normpath(pattern).lstrip("/")
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1:i + 2] == "*":
                i += 1
                if pattern[i + 1:i + 2] == "/":
                    i += 1
                out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return out + "$"


def dockerignored(patterns: list[str], path: str) -> bool:
    """Whether Docker leaves `path` out of the build context: the last pattern matching it or one of its parent
    directories decides (`!` patterns put paths back)."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for raw in patterns:
        exclude = not raw.startswith("!")
        regex = re.compile(dockerignore_regex(raw if exclude else raw[1:]))
        if any(regex.match(c) for c in candidates):
            ignored = exclude
    return ignored


def test_dockerignore_semantics():
    """The matcher above agrees with Docker's rules on the cases the file relies on."""
    assert dockerignored(["build*/"], "build/pgkeel") and dockerignored(["build*/"], "build-w/x/y.o")
    assert not dockerignored(["build*/"], "src/build/x") and not dockerignored(["build*/"], "e2e/build.py")
    assert dockerignored(["**/__pycache__"], "__pycache__/a.pyc")
    assert dockerignored(["**/__pycache__"], "e2e/k8s/__pycache__/a.pyc")
    assert not dockerignored(["*.md"], "charts/README.md") and dockerignored(["*.md"], "README.md")
    assert not dockerignored(["build*/", "!build-keep"], "build-keep/x")


def test_dockerignore_keeps_the_build_inputs():
    """The build context leaves out the local build trees, tool downloads, caches and results, and keeps every
    file the image build reads: the Dockerfile's COPY sources and every directory CMakeLists.txt adds outside
    `if(PGKEEL_TESTS)` (the Dockerfile builds with -DPGKEEL_TESTS=OFF, so tests/ is not needed)."""
    path = REPO_ROOT / ".dockerignore"
    assert path.is_file(), "no .dockerignore: `COPY . .` sends build trees and node_modules to the daemon"
    patterns = [line.strip() for line in path.read_text().splitlines()
                if line.strip() and not line.strip().startswith("#")]
    for left_out in ("build/pgkeel", "build-w/CMakeCache.txt", "build-fuzz/x/y.o", "e2e/k8s/node_modules/yaml/x.js",
                     "e2e/k8s/bin/helm", "e2e/node/node_modules/pg/index.js", ".git/HEAD", ".git/objects/ab/cd",
                     "__pycache__/x.pyc", "e2e/__pycache__/helm_util.cpython-311.pyc",
                     "discovery/src/__pycache__/x.pyc", "bench/results/run-1.json"):
        assert dockerignored(patterns, left_out), f".dockerignore keeps {left_out}"
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "-DPGKEEL_TESTS=OFF" in dockerfile and "COPY . ." in dockerfile
    needed = ["Dockerfile", "CMakeLists.txt"]
    needed += [m.split()[0] for m in re.findall(r"^COPY\s+(?!--from)(\S+\s)", dockerfile, re.M) if m.strip() != "."]
    cmake = (REPO_ROOT / "CMakeLists.txt").read_text()
    depth, dirs = 0, []
    for line in cmake.splitlines():
        line = line.split("#")[0].strip()
        if re.match(r"if\s*\(", line):
            depth += 1 if "PGKEEL_TESTS" in line or depth else 0
        elif re.match(r"endif\s*\(", line) and depth:
            depth -= 1
        elif (m := re.match(r"add_subdirectory\s*\(\s*([^\s)]+)", line)) and not depth:
            dirs.append(m.group(1))
    assert {"discovery", "src/inject"} <= set(dirs) and "tests" not in dirs, dirs
    tracked = run(["git", "-C", REPO_ROOT, "ls-files", "--", *dirs, "src"]).stdout.split()
    assert len(tracked) > 50, "git ls-files found too few sources"
    for f in needed + tracked:
        assert not dockerignored(patterns, f), f".dockerignore leaves out {f}, which the image build reads"
