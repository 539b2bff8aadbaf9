"""The application templates build with no Docker Hub: on a Debian base image made by debootstrap, with
buildah (pip reaching PyPI from a RUN step), are pushed to the real registry and run as user 10001.

The base image's root file system is made once per machine (about a minute, as root) and cached under
~/.cache/portal-testbed/base-images; a warm session only imports it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scaffolds import ScaffoldContext, render_source
from testbed.base_image import base_images_dir, build_python_base

# The first test may make the base image cold: debootstrap, then pip installing from PyPI.
pytestmark = pytest.mark.timeout(900)

CONTEXT = ScaffoldContext(team="dev", project="shop", application="cart", registry="127.0.0.1:5000",
                          image="dev/shop-cart")


def _write_source(stack: str, folder: Path) -> Path:
    for name, content in render_source(stack, CONTEXT).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return folder


def _run(builder, image: str, *argv: str) -> str:
    """What ``argv`` prints in a container of ``image``, run as the image says (user, working folder)."""
    result = builder.run(image, list(argv))
    assert result.returncode == 0, f"{argv} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    return result.stdout


def _build_and_push(builder, registry, stack: str, folder: Path, base: str, repository: str) -> list[str]:
    lines: list[str] = []
    builder.build(_write_source(stack, folder), f"localhost/{repository}:1", build_args={"BASE_IMAGE": base},
                  log=lines.append)
    pushed = builder.push(f"localhost/{repository}:1", f"{registry.host}/{repository}:1", tls_verify=False)
    assert "1" in registry.tags(repository)
    assert registry.manifest_digest(repository, "1") == pushed.digest
    return lines


def test_the_base_image_runs_python_and_lets_pip_install_into_it(image_builder, python_base):
    # One container for all the checks: with vfs storage each one copies the whole image.
    out = _run(image_builder, python_base, "sh", "-c", """python - <<'EOF' && pip --version
import os, ssl, sys, sysconfig, venv
print(os.getuid(), sys.version_info >= (3, 11))
print(os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))
print([os.path.join(d, f) for top in ("/var/lib/apt/lists", "/var/cache/apt") for d, _, fs in os.walk(top) for f in fs])
EOF""")
    identity, marker, apt_files, pip = out.splitlines()
    assert identity == "0 True", out
    assert marker == "False", out  # pip in a Dockerfile's RUN step may install into the system interpreter
    assert apt_files == "[]", out  # no package lists, no downloaded packages
    assert pip.startswith("pip "), out

    # Once in the builder's storage, the image is reused as it is.
    assert build_python_base(image_builder, base_images_dir()) == python_base


def test_the_python_web_template_builds_on_it_with_pip_from_pypi_and_runs_as_10001(
        tmp_path, image_builder, registry_server, python_base):
    lines = _build_and_push(image_builder, registry_server, "python-web", tmp_path, python_base, "dev/shop-cart")
    # The base holds no Flask: the RUN step downloaded the pins from PyPI.
    assert any("Downloading" in line and "flask-3.1.3" in line.lower() for line in lines), lines

    # As the image's user, in its working folder: the imports, then gunicorn loading app:app and exiting.
    out = _run(image_builder, "localhost/dev/shop-cart:1", "sh", "-c",
               "python -c 'import os, flask, gunicorn; print(os.getuid(), os.getgid(), gunicorn.__version__)' "
               "&& gunicorn --check-config app:app")
    assert out.split() == ["10001", "10001", "23.0.0"], out


def test_the_static_site_template_builds_on_it_and_runs_as_10001(
        tmp_path, image_builder, registry_server, python_base):
    _build_and_push(image_builder, registry_server, "static-site", tmp_path, python_base, "dev/shop-site")

    out = _run(image_builder, "localhost/dev/shop-site:1", "sh", "-c",
               "python -c 'import http.server, os; print(os.getuid(), os.getgid(), sorted(os.listdir(\"public\")))' "
               "&& python serve.py --help")
    identity, usage = out.split("\n", 1)
    assert identity == "10001 10001 ['css', 'index.html']", out
    assert "--directory" in usage, out
