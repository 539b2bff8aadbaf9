"""buildah builds an image from a Dockerfile (RUN steps included), pushes it to the real registry, and
skopeo copies it back."""

from __future__ import annotations

import json

import pytest

from testbed.images import BuildFailed


def test_an_image_built_by_buildah_is_pushed_listed_and_copied_back(tmp_path, image_builder, registry_server):
    context = tmp_path / "app"
    context.mkdir()
    (context / "hello.txt").write_text("hello from the testbed\n")
    (context / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY hello.txt /srv/hello.txt\n"
        "RUN mkdir -p /srv/built && wc -c /srv/hello.txt > /srv/built/size && echo ran > /srv/built/marker\n"
        'CMD ["cat", "/srv/hello.txt"]\n')
    lines: list[str] = []
    image_builder.build(context, "localhost/dev/shop-api:1", build_args={"BASE_IMAGE": image_builder.base_image},
                        log=lines.append)
    assert any("RUN mkdir" in line for line in lines), lines  # the build streamed its steps

    pushed = image_builder.push("localhost/dev/shop-api:1", f"{registry_server.host}/dev/shop-api:abc1234",
                                tls_verify=False)
    assert pushed.digest.startswith("sha256:")
    assert "abc1234" in registry_server.tags("dev/shop-api")
    assert registry_server.manifest_digest("dev/shop-api", "abc1234") == pushed.digest

    copied = tmp_path / "copied"
    image_builder.copy(f"docker://{registry_server.host}/dev/shop-api:abc1234", f"dir:{copied}", tls_verify=False)
    manifest = json.loads((copied / "manifest.json").read_text())
    layers = manifest["layers"]
    assert len(layers) >= 2  # the base and our own layer
    # The RUN step's output is in the last layer: unpack it and read what the step wrote.
    import tarfile

    with tarfile.open(copied / layers[-1]["digest"].split(":")[1]) as layer:
        names = layer.getnames()
        assert any(n.endswith("srv/built/marker") for n in names), names
        size = layer.extractfile(next(m for m in layer.getmembers() if m.name.endswith("srv/built/size")))
        assert size.read().decode().split()[0] == str(len("hello from the testbed\n"))


def test_a_failing_build_step_is_reported_with_its_output(tmp_path, image_builder):
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo about to fail && exit 3\n")
    with pytest.raises(BuildFailed) as failure:
        image_builder.build(tmp_path, "localhost/dev/broken:1", build_args={"BASE_IMAGE": image_builder.base_image})
    assert "about to fail" in failure.value.output


def test_a_build_past_its_time_limit_is_stopped(tmp_path, image_builder):
    (tmp_path / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN sleep 60\n")
    with pytest.raises(BuildFailed, match="stopped after 3 s"):
        image_builder.build(tmp_path, "localhost/dev/slow:1", build_args={"BASE_IMAGE": image_builder.base_image},
                            timeout=3)
