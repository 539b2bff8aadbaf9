"""The testbed's binaries: found on the machine, or built once from the Go module proxy.

Each Go program comes from a small module of ours under ``testbed/gomod/``
whose go.mod and go.sum pin it and everything it needs, so a build is the same
on every machine. A built binary is kept under ``.cache/testbed/bin/<name>-<version>/``
and the Go module and build caches stay in Go's default places, so only the
first build on a machine is slow.

A binary named by its environment variable (``TESTBED_KUBE_APISERVER``, ...),
found in ``KUBEBUILDER_ASSETS`` (the envtest convention: a folder holding
kube-apiserver, etcd and kubectl) or on PATH is used as it is, unbuilt.

    python -m testbed.binaries build [NAME ...]   build what is missing, say how long it took
    python -m testbed.binaries path [NAME ...]    where each binary is, or would be built
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from testbed.process import MissingComponent

GOMOD = Path(__file__).resolve().parent / "gomod"
REPO = GOMOD.parent.parent
HOW_GO = ("Install Go 1.26 or newer (https://go.dev/doc/install, or Debian's golang-go if it is new enough) "
          "and make sure `go` is on PATH, or set GO to its path")


@dataclass(frozen=True)
class Component:
    name: str
    gomod: str  # folder under testbed/gomod holding the module that pins it
    module: str  # the module whose version names the binary
    package: str  # the main package
    env_var: str
    in_kubebuilder_assets: bool = False

    @property
    def version(self) -> str:
        return required_version(GOMOD / self.gomod / "go.mod", self.module)

    def ldflags(self) -> list[str]:
        """Version stamps the upstream release builds set, so that clients see a real version."""
        version = self.version
        if self.module == "k8s.io/kubernetes":
            major, minor = version.lstrip("v").split(".")[:2]
            # A module download carries no commit: stamp it empty rather than leave the "$Format:%H$" placeholder.
            stamps = {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitCommit": ""}
            # hack/lib/version.sh stamps both packages: client-go's is what kubectl prints as its own version.
            return [f"-X {pkg}.{key}={value}" for key, value in stamps.items()
                    for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")]
        if self.module == "helm.sh/helm/v3":
            # The Kubernetes version helm assumes offline (helm template, lint): that of its client-go.
            k8s_minor = required_version(GOMOD / self.gomod / "go.mod", "k8s.io/client-go").split(".")[1]
            return [f"-X helm.sh/helm/v3/internal/version.version={version}",
                    *(f"-X helm.sh/helm/v3/pkg/{pkg}.k8sVersion{part}={value}"
                      for pkg in ("lint/rules", "chartutil") for part, value in (("Major", "1"), ("Minor", k8s_minor)))]
        if self.module == "sigs.k8s.io/metrics-server":
            # As its Makefile: the version lives in client-go's package (what `metrics-server --version` prints).
            return [f"-X k8s.io/client-go/pkg/version.{key}={value}"
                    for key, value in (("gitVersion", version), ("gitCommit", ""))]
        return []  # kwok and etcd carry their version in their source

    @property
    def tags(self) -> str:
        # The tags of Kubernetes' own release builds (hack/lib/golang.sh).
        return "selinux,notest,grpcnotrace" if self.module == "k8s.io/kubernetes" else ""


COMPONENTS = {c.name: c for c in (
    Component("etcd", "etcd", "go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/server/v3", "TESTBED_ETCD",
              in_kubebuilder_assets=True),
    Component("kube-apiserver", "kubernetes", "k8s.io/kubernetes", "k8s.io/kubernetes/cmd/kube-apiserver",
              "TESTBED_KUBE_APISERVER", in_kubebuilder_assets=True),
    Component("kube-controller-manager", "kubernetes", "k8s.io/kubernetes",
              "k8s.io/kubernetes/cmd/kube-controller-manager", "TESTBED_KUBE_CONTROLLER_MANAGER"),
    Component("kube-scheduler", "kubernetes", "k8s.io/kubernetes", "k8s.io/kubernetes/cmd/kube-scheduler",
              "TESTBED_KUBE_SCHEDULER"),
    Component("kubectl", "kubernetes", "k8s.io/kubernetes", "k8s.io/kubernetes/cmd/kubectl", "TESTBED_KUBECTL",
              in_kubebuilder_assets=True),
    Component("kwok", "kwok", "sigs.k8s.io/kwok", "sigs.k8s.io/kwok/cmd/kwok", "TESTBED_KWOK"),
    Component("helm", "helm", "helm.sh/helm/v3", "helm.sh/helm/v3/cmd/helm", "TESTBED_HELM"),
    Component("metrics-server", "metrics-server", "sigs.k8s.io/metrics-server",
              "sigs.k8s.io/metrics-server/cmd/metrics-server", "TESTBED_METRICS_SERVER"),
)}

# What `build` with no names builds: all but kubectl, which the testbed itself does not need.
DEFAULT_BUILD = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "helm",
                 "metrics-server"]


def required_version(go_mod: Path, module: str) -> str:
    """The version of ``module`` that ``go_mod`` requires."""
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.MULTILINE)
    if not match:
        raise ValueError(f"{go_mod} does not require {module}")
    return match.group(1)


def bin_dir() -> Path:
    """Built binaries live in the user's cache, outside any clone, so every checkout on a machine
    (CI's fresh clones included) reuses them; TESTBED_BIN_DIR moves them."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("TESTBED_BIN_DIR") or cache / "portal-testbed" / "bin")


def cached_path(name: str) -> Path:
    component = COMPONENTS[name]
    return bin_dir() / f"{name}-{component.version}" / name


def find(name: str) -> Path | None:
    """The binary to use unbuilt: its environment variable, KUBEBUILDER_ASSETS, PATH, then our cache."""
    component = COMPONENTS[name]
    if os.environ.get(component.env_var):
        path = Path(os.environ[component.env_var])
        if not os.access(path, os.X_OK):
            raise MissingComponent(f"{name} at {path} (from {component.env_var})",
                                   f"Point {component.env_var} at an executable {name}, or unset it to build one.")
        return path
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and component.in_kubebuilder_assets and os.access(Path(assets) / name, os.X_OK):
        return Path(assets) / name
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    cached = cached_path(name)
    return cached if os.access(cached, os.X_OK) else None


def ensure(name: str) -> Path:
    """The path of binary ``name``, building it first if the machine has none."""
    if name not in COMPONENTS:
        raise ValueError(f"unknown binary {name!r}; known: {', '.join(COMPONENTS)}")
    return find(name) or build(name)


def build(name: str) -> Path:
    """Build ``name`` into the cache (serially: one build at a time on this machine) and return its path."""
    component = COMPONENTS[name]
    target = cached_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(bin_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same thing
        if os.access(target, os.X_OK):
            return target
        go = _go()
        partial = target.with_name(f".{name}.partial")
        # As upstream release builds: static, no symbol tables, no local paths; -p 2 as these machines have 2 cores.
        argv = [go, "build", "-p", "2", "-trimpath", "-mod=readonly", "-buildvcs=false",
                "-ldflags", " ".join(["-s", "-w", *component.ldflags()]),
                *(["-tags", component.tags] if component.tags else []), "-o", str(partial), component.package]
        log_path = target.with_name("build.log")
        with open(log_path, "w") as log:
            log.write(shlex.join(argv) + "\n")
            log.flush()
            result = subprocess.run(argv, cwd=GOMOD / component.gomod, stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, "CGO_ENABLED": "0"})
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            raise MissingComponent(
                f"{name} {component.version}",
                f"Building it failed (go build exited {result.returncode}; full log in {log_path}):\n{tail}\n"
                f"Fix the build, or set {component.env_var} to an executable {name} built elsewhere.")
        os.replace(partial, target)  # never leave a half-written binary under the final name
        return target


def _go() -> str:
    if os.environ.get("GO"):
        go = os.environ["GO"]
        if not os.access(go, os.X_OK):
            raise MissingComponent(f"The Go toolchain at {go} (from GO)", HOW_GO)
        return go
    # /usr/local/go is where the official archive installs; it is not always on PATH.
    go = shutil.which("go") or next((p for p in ("/usr/local/go/bin/go",) if os.access(p, os.X_OK)), None)
    if not go:
        raise MissingComponent("The Go toolchain (needed to build the testbed's binaries)", HOW_GO)
    return go


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.binaries", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build", "path"])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(COMPONENTS)}")
    args = parser.parse_args(argv)
    names = args.names or (DEFAULT_BUILD if args.command == "build" else list(COMPONENTS))
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        parser.error(f"unknown binary {', '.join(unknown)}; known: {', '.join(COMPONENTS)}")
    for name in names:
        found = find(name)
        if args.command == "path":
            print(f"{name}\t{found or f'{cached_path(name)} (not built)'}")
            continue
        if found:
            print(f"{name}: have {found}", flush=True)
            continue
        print(f"{name} {COMPONENTS[name].version}: building ...", flush=True)
        started = time.monotonic()
        path = build(name)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2
        print(f"{name}: built {path} in {time.monotonic() - started:.0f} s, {path.stat().st_size / 1e6:.0f} MB "
              f"(largest build process so far: {peak:.1f} GB resident)", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_main())
    except MissingComponent as exc:
        sys.exit(str(exc))
