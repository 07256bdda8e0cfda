"""The container image's runtime stage: scripts/check-runtime-libs.py passes for the built pgkeel and the
Dockerfile, and fails, naming the package, when a library or a Dockerfile rule is missing."""

import os
import subprocess

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
