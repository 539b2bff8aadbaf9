"""`python -m testbed.search build|path [ENGINE ...]`: the search engines' jars, built once per machine."""

from __future__ import annotations

import argparse
import sys
import time

from testbed.process import MissingComponent
from testbed.search.jars import ENGINES, build, find


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.search", description=__doc__.split(":")[0])
    parser.add_argument("command", choices=["build", "path"])
    parser.add_argument("names", nargs="*", metavar="ENGINE", help=f"any of {', '.join(ENGINES)} (default: all)")
    args = parser.parse_args(argv)
    names = args.names or list(ENGINES)
    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        parser.error(f"unknown search engine {', '.join(unknown)}; known: {', '.join(ENGINES)}")
    for name in names:
        engine, found = ENGINES[name], find(name)
        if args.command == "path":
            print(f"{name}\t{found or f'{engine.build_dir} (not built)'}")
            continue
        if found:
            print(f"{name} {engine.version}: have {found}", flush=True)
            continue
        print(f"{name} {engine.version}: building with Maven (downloads to ~/.m2 the first time) ...", flush=True)
        started = time.monotonic()
        path = build(name)
        size = sum(p.stat().st_size for p in path.rglob("*.jar"))
        print(f"{name}: built {path} in {time.monotonic() - started:.0f} s, {size / 1e6:.0f} MB of jars", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_main())
    except MissingComponent as exc:
        sys.exit(str(exc))
