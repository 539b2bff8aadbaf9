"""The portal's own image, built from the repository's Dockerfile with buildah and no registry at all.

The Dockerfile starts ``FROM ${BASE_IMAGE}`` (python:3.11-slim by default); here it is given the testbed's
offline Python base (``testbed.base_image``: Debian bookworm's Python 3.11, pip included), and pip in the build
stage reaches PyPI for the wheels. pip's cache is a ``RUN --mount=type=cache``, which buildah keeps in its own
folder on the machine (``/var/tmp/buildah-cache``, outside any clone, as the base image's tarball). Behind a
proxy that sends no caching headers, as here, it keeps only the wheels pip built from sdists, and each build
downloads the others again (about 15 s of the 45 s a build takes on two cores).

    python -m testbed.portal_image build [--tag T] [--store DIR]    build it (``make image``), say how long it took
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from testbed.base_image import base_images_dir, build_python_base
from testbed.images import BuildFailed, ImageBuilder
from testbed.process import MissingComponent

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TAG = "localhost/portal/portal:dev"
# Where `make image` keeps its buildah store (ignored by git), unless told otherwise.
STORE = PROJECT_ROOT / ".cache" / "testbed" / "images"


def build(builder: ImageBuilder, tag: str = TAG, base: str | None = None, log=None, timeout: float = 900) -> str:
    """Build the repository's Dockerfile into ``tag`` in ``builder``'s store; returns the image id.

    ``base`` is the BASE_IMAGE of both stages: the testbed's offline Python base unless given (made or
    imported into the store if missing)."""
    base = base or build_python_base(builder, base_images_dir(), log=log)
    return builder.build(PROJECT_ROOT, tag, build_args={"BASE_IMAGE": base, "VERSION": tag.rsplit(":", 1)[-1],
                                                        "REVISION": revision()},
                         timeout=timeout, log=log)


def revision() -> str:
    """The checkout's commit, for the image's org.opencontainers.image.revision label."""
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def inspect(builder: ImageBuilder, tag: str) -> dict:
    """buildah's description of the image ``tag``: ``OCIv1`` (its config: user, labels, command), ``Manifest``."""
    # The store's flags are ImageBuilder's own, so that this reads the store it built into.
    done = subprocess.run([builder.buildah, *builder._storage, "inspect", "--type", "image", tag], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise BuildFailed(f"buildah inspect {tag}", done.stderr)
    return json.loads(done.stdout)


def image_size(description: dict) -> int:
    """An image's size in bytes from :func:`inspect`'s description: its layers, uncompressed."""
    return sum(layer["size"] for layer in json.loads(description["Manifest"])["layers"])


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.portal_image", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--tag", default=TAG)
    parser.add_argument("--store", type=Path, default=STORE, help="buildah's storage folder (default: %(default)s)")
    args = parser.parse_args(argv)
    builder = ImageBuilder(args.store)
    started = time.monotonic()
    image = build(builder, args.tag, log=print)
    # The previous build's image, untagged now: with vfs storage each one holds a full copy of its files.
    subprocess.run([builder.buildah, *builder._storage, "rmi", "--prune"], capture_output=True)
    print(f"\n{args.tag} ({image.removeprefix('sha256:')[:12]}): built in {time.monotonic() - started:.0f} s, "
          f"{image_size(inspect(builder, args.tag)) / 1e6:.0f} MB uncompressed, in the buildah store {args.store}",
          flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_main())
    except (MissingComponent, BuildFailed) as exc:
        sys.exit(str(exc))
