#!/usr/bin/python3
"""Checks that the container image's runtime stage holds everything the pgkeel binary needs.

Every shared library `ldd` resolves for the binary must come from a Debian package that the runtime
stage installs: the libraries the binary names itself (ELF NEEDED) from a package listed in
`scripts/install-deps.sh --print-runtime`, the rest from those packages' dependencies (or the
essential packages every Debian image has). The Dockerfile's last stage must install exactly that
list, copy only the binary, and run as a numeric non-root user. Exit 0 when all holds; 1 naming each
problem and its fix.

usage: scripts/check-runtime-libs.py [BINARY [DOCKERFILE]]   (defaults: build/pgkeel, Dockerfile)
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORTS = {"6432", "6433", "9432"}


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def runtime_packages() -> list[str]:
    return run("bash", os.path.join(ROOT, "scripts/install-deps.sh"), "--print-runtime").split()


def installed_packages() -> dict[str, dict]:
    """Installed package -> its dependencies (alternatives as lists), Provides and Essential flag."""
    fmt = "${Package}\t${Status}\t${Essential}\t${Pre-Depends}\t${Depends}\t${Provides}\n"
    packages = {}
    for line in run("dpkg-query", "-W", "-f", fmt).splitlines():
        name, status, essential, pre, deps, provides = line.split("\t")
        if not status.endswith(" installed"):
            continue
        alternatives = [[re.sub(r"[ (:].*", "", alt.strip()) for alt in group.split("|")]
                        for group in f"{pre},{deps}".split(",") if group.strip()]
        packages[name] = {"deps": alternatives, "essential": essential == "yes",
                          "provides": [re.sub(r"[ (:].*", "", p.strip()) for p in provides.split(",") if p.strip()]}
    return packages


def closure(roots: list[str], packages: dict[str, dict]) -> dict[str, str]:
    """Every installed package reachable from `roots` through Depends/Pre-Depends -> why it is there."""
    providers: dict[str, str] = {}
    for name, info in packages.items():
        for virtual in info["provides"]:
            providers.setdefault(virtual, name)
    why = {root: "listed" for root in roots if root in packages}
    why.update({name: "essential" for name, info in packages.items() if info["essential"] and name not in why})
    todo = list(why)
    while todo:
        name = todo.pop()
        for group in packages[name]["deps"]:
            found = next((alt for alt in group if alt in packages), None) or \
                next((providers[alt] for alt in group if alt in providers), None)
            if found and found not in why:
                why[found] = f"needed by {name}"
                todo.append(found)
    return why


def spellings(path: str) -> list[str]:
    """`path` and its merged-/usr spellings, as dpkg may have recorded any of them."""
    real = os.path.realpath(path)
    return list(dict.fromkeys([path, real, "/usr" + path, real.removeprefix("/usr")]))


def owners(paths: list[str]) -> dict[str, str]:
    """Path -> the package that installed it, for the paths dpkg knows (one dpkg-query for all)."""
    candidates = sorted({spelling for path in paths for spelling in spellings(path)})
    res = subprocess.run(["dpkg-query", "-S", *candidates], capture_output=True, text=True)
    found = {}
    for line in res.stdout.splitlines():
        package, _, path = line.partition(": ")
        found[path.strip()] = package.split(":")[0].split(",")[0].strip()
    return {path: next(found[s] for s in spellings(path) if s in found)
            for path in paths if any(s in found for s in spellings(path))}


def libraries(binary: str) -> tuple[dict[str, str | None], list[str]]:
    """soname -> resolved path (None when ldd finds none), and the sonames the binary itself NEEDs."""
    resolved = {}
    for line in run("ldd", binary).splitlines():
        parts = line.split()
        if not parts or parts[0] == "linux-vdso.so.1":
            continue
        if len(parts) >= 3 and parts[1] == "=>":  # "libx.so.1 => /path (0x...)" or "=> not found"
            resolved[parts[0]] = None if parts[2] == "not" else parts[2]
        elif parts[0].startswith("/"):  # the dynamic loader: "/lib64/ld-linux-x86-64.so.2 (0x...)"
            resolved[os.path.basename(parts[0])] = parts[0]
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", run("readelf", "-d", binary))
    return resolved, needed


def runtime_stage(dockerfile: str) -> list[str]:
    """The instruction lines of the Dockerfile's last stage (continuations joined)."""
    text = open(dockerfile).read().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    starts = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    return lines[starts[-1]:] if starts else []


def check_dockerfile(dockerfile: str) -> list[str]:
    stage = runtime_stage(dockerfile)
    if not stage:
        return [f"{dockerfile}: no FROM line"]
    problems = []
    runs = [line for line in stage if line.upper().startswith("RUN ")]
    if not any("install-deps.sh --runtime" in line for line in runs):
        problems.append(f"{dockerfile}: the runtime stage does not run `install-deps.sh --runtime`")
    if any(re.search(r"apt(-get)? install", line) for line in runs):
        problems.append(f"{dockerfile}: the runtime stage installs packages besides `install-deps.sh --runtime`")
    copies = [line for line in stage if line.upper().startswith("COPY ") and "--from=" in line]
    if not any(line.split()[-1] == "/usr/local/bin/pgkeel" for line in copies):
        problems.append(f"{dockerfile}: the runtime stage does not COPY --from the build stage to /usr/local/bin/pgkeel")
    users = [line.split()[1] for line in stage if line.upper().startswith("USER ")]
    if not users or not re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", users[-1]):
        problems.append(f"{dockerfile}: the runtime stage must end with a numeric non-root USER (got {users[-1:] or 'none'})")
    exposed = {port.split("/")[0] for line in stage if line.upper().startswith("EXPOSE ") for port in line.split()[1:]}
    if not PORTS <= exposed:
        problems.append(f"{dockerfile}: the runtime stage does not EXPOSE {' '.join(sorted(PORTS - exposed))}")
    return problems


def main(argv: list[str]) -> int:
    binary = argv[1] if len(argv) > 1 else os.path.join(ROOT, "build/pgkeel")
    dockerfile = argv[2] if len(argv) > 2 else os.path.join(ROOT, "Dockerfile")
    listed = runtime_packages()
    packages = installed_packages()
    problems = [f"install-deps.sh --print-runtime: {p} is not installed here, so it cannot be checked"
                for p in listed if p not in packages]
    problems += check_dockerfile(dockerfile)
    why = closure(listed, packages)
    resolved, needed = libraries(binary)
    owner = owners([path for path in resolved.values() if path])
    for soname, path in sorted(resolved.items()):
        if path is None:
            problems.append(f"{soname}: ldd finds no such library for {binary}")
            continue
        package = owner.get(path)
        if package is None:
            problems.append(f"{soname} ({path}): no Debian package installed it; the runtime stage cannot have it")
        elif soname in needed and package not in listed:
            problems.append(f"{soname}: the binary links it directly, from {package}; add {package} to RUNTIME "
                            "in scripts/install-deps.sh")
        elif package not in why:
            problems.append(f"{soname}: from {package}, which no runtime package depends on; add {package} "
                            "to RUNTIME in scripts/install-deps.sh")
        else:
            print(f"ok  {soname:32} {package:28} {why[package]}")
    for problem in problems:
        print(f"PROBLEM  {problem}")
    print(f"{len(resolved)} libraries, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
