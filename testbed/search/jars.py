"""The search engines' jars: built once per machine from Maven Central, by Maven projects of ours.

Each engine is a small Maven project under ``testbed/search/maven/<engine>/``:
a pom that pins the server jar and the plugins its distribution would ship as
modules, and a launcher class that starts a node with those plugins from the
class path. A build copies the project to a scratch folder (the checkout stays
clean), runs ``mvn package`` there, and keeps the launcher jar and ``lib/``
(every dependency jar) under ``~/.cache/portal-testbed/bin/<engine>-<version>-<key>/``,
where the key is a hash of the project's files: a fresh clone on the same
machine reuses the build, and a change to the pom or the launcher makes a new
one. Maven keeps what it downloads in ``~/.m2``, so only the first build on a
machine goes to the network.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from testbed.binaries import bin_dir
from testbed.process import MissingComponent

MAVEN = Path(__file__).resolve().parent / "maven"
HOW_JAVA = ("Install a JDK 17 and Maven (Debian: `apt-get install openjdk-17-jdk-headless maven`), "
            "or set JAVA_HOME to a JDK and MVN to a mvn executable")


@dataclass(frozen=True)
class Engine:
    name: str  # also the folder of its Maven project under testbed/search/maven
    main_class: str
    version_property: str  # the pom property that pins the server's version
    min_java: int
    # Run with lib/ as the module path (Elasticsearch 8's plugins are module layers over the server's modules),
    # rather than everything on the class path.
    modular: bool = False

    @property
    def project(self) -> Path:
        return MAVEN / self.name

    @property
    def version(self) -> str:
        pom = (self.project / "pom.xml").read_text()
        match = re.search(rf"<{re.escape(self.version_property)}>([^<]+)</", pom)
        if not match:
            raise ValueError(f"{self.project / 'pom.xml'} sets no <{self.version_property}>")
        return match.group(1)

    def key(self) -> str:
        """A hash of every file of the Maven project: what the build depends on."""
        digest = hashlib.sha256()
        for path in sorted(p for p in self.project.rglob("*") if p.is_file() and "target" not in p.parts):
            digest.update(path.relative_to(self.project).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
        return digest.hexdigest()[:12]

    @property
    def build_dir(self) -> Path:
        return bin_dir() / f"{self.name}-{self.version}-{self.key()}"

    def java_args(self, build_dir: Path, java_version: int) -> list[str]:
        """The JVM options and the class (or module) path to run the launcher of ``build_dir`` on that Java."""
        # As both engines' own launchers: SPI for the server's ISO calendar data, then the COMPAT locale data
        # that keeps the date formats of earlier releases; JDK 23 dropped COMPAT, and there they take CLDR.
        locales = "SPI,COMPAT" if java_version < 23 else "SPI,CLDR"
        paths = (["--module-path", str(build_dir / "lib"), "--add-modules=ALL-MODULE-PATH",
                  "-cp", str(build_dir / "launcher.jar")] if self.modular
                 else ["-cp", f"{build_dir / 'launcher.jar'}{os.pathsep}{build_dir / 'lib' / '*'}"])
        return [*_SMALL_JVM, f"-Djava.locale.providers={locales}", *paths, self.main_class]


# Small heap; C1 only and the serial collector: they start the node seconds sooner and keep it about 70 MB
# smaller, and a test node never runs long enough for C2 to pay off.
_SMALL_JVM = ("-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss1m",
              "-XX:-OmitStackTraceInFastThrow", "-Djava.awt.headless=true", "-Dfile.encoding=UTF-8",
              "-Djna.nosys=true", "-Dlog4j.shutdownHookEnabled=false", "-Dlog4j2.disable.jmx=true",
              "-Dlog4j2.formatMsgNoLookups=true", "-Dio.netty.noUnsafe=true", "-Dio.netty.noKeySetOptimization=true",
              "-Dio.netty.recycler.maxCapacityPerThread=0")

ENGINES = {e.name: e for e in (
    Engine("opensearch", "portal.testbed.OpenSearchNode", "opensearch.version", min_java=11),
    Engine("elasticsearch", "portal.testbed.ElasticsearchNode", "elasticsearch.version", min_java=17, modular=True),
)}


def find(name: str) -> Path | None:
    """The build of engine ``name`` for its project as it is now, if this machine has one."""
    build_dir = ENGINES[name].build_dir
    return build_dir if (build_dir / "launcher.jar").is_file() and (build_dir / "lib").is_dir() else None


def ensure(name: str) -> Path:
    """The folder holding engine ``name``'s launcher.jar and lib/, building it first if the machine has none."""
    if name not in ENGINES:
        raise ValueError(f"unknown search engine {name!r}; known: {', '.join(ENGINES)}")
    return find(name) or build(name)


def build(name: str) -> Path:
    """Build engine ``name`` into the cache (one build at a time on this machine) and return its folder."""
    engine = ENGINES[name]
    java(engine.min_java)  # fail early, and with the message on how to get one
    mvn = _maven()
    target = engine.build_dir
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(bin_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same thing
        if find(name):
            return target
        scratch = target.with_name(f".{target.name}.partial")
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(engine.project, scratch / "project", ignore=shutil.ignore_patterns("target"))
        argv = [mvn, "-B", "-q", "-f", str(scratch / "project" / "pom.xml"), "package"]
        log_path = scratch / "build.log"
        with open(log_path, "w") as log:
            log.write(" ".join(argv) + "\n")
            log.flush()
            result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        built = scratch / "project" / "target"
        if result.returncode != 0 or not (built / "launcher.jar").is_file():
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            raise MissingComponent(
                f"{name} {engine.version}",
                f"Building it failed (mvn exited {result.returncode}; full log in {log_path}):\n{tail}")
        # Keep only what a node needs (modules/: the plugins, where the engine wants them in folders of their
        # own), then move it under its final name in one step.
        for part in ("launcher.jar", "lib", "modules"):
            if (built / part).exists():
                os.replace(built / part, scratch / part)
        shutil.rmtree(scratch / "project")
        os.replace(scratch, target)
        return target


def java(min_version: int) -> str:
    """The ``java`` of JAVA_HOME, else the one on PATH, if it is at least ``min_version``."""
    if os.environ.get("JAVA_HOME"):
        path = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        if not os.access(path, os.X_OK):
            raise MissingComponent(f"Java at {path} (from JAVA_HOME)", HOW_JAVA)
        found = str(path)
    else:
        found = shutil.which("java")
        if not found:
            raise MissingComponent("Java (to run the testbed's search engine)", HOW_JAVA)
    version = java_version(found)
    if version < min_version:
        raise MissingComponent(f"Java {min_version} or newer (found Java {version} at {found})", HOW_JAVA)
    return found


@functools.lru_cache(maxsize=None)
def java_version(java_path: str) -> int:
    """The feature release of a JVM: 17 for "17.0.15", 8 for "1.8.0_392"."""
    out = subprocess.run([java_path, "-version"], capture_output=True, text=True, check=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise MissingComponent(f"A Java whose version can be read (`{java_path} -version` said: {out.strip()})",
                               HOW_JAVA)
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 else major


def _maven() -> str:
    if os.environ.get("MVN"):
        mvn = os.environ["MVN"]
        if not os.access(mvn, os.X_OK):
            raise MissingComponent(f"Maven at {mvn} (from MVN)", HOW_JAVA)
        return mvn
    mvn = shutil.which("mvn")
    if not mvn:
        raise MissingComponent("Maven (to build the testbed's search engine from Maven Central)", HOW_JAVA)
    return mvn
