"""The golden image's cache key and its bad-input errors (no root, no build)."""

from __future__ import annotations

from click.testing import CliRunner

from grayctl.cli import cli
from grayctl.lab.image import image_inputs


def test_the_cache_key_depends_on_the_inputs_only() -> None:
    a, b = image_inputs("debian12"), image_inputs("debian12")
    assert a.key == b.key and len(a.key) == 16
    assert image_inputs("debian12", extra_packages=("curl",)).key != a.key
    assert image_inputs("other").key != a.key and image_inputs("debian12", size="4G").key != a.key
    assert "grayctl" not in " ".join(a.packages)  # grayctl is shared at run time, not baked in


def test_bad_image_options_are_bad_input() -> None:
    for args, text in ((["--name", "Bad_Name"], "not a usable image name"),
                       (["--package", "evil;rm"], "not a Debian package name"),
                       (["--size", "lots"], "not a disk size")):
        result = CliRunner().invoke(cli, ["image", "build", *args], obj={})
        assert result.exit_code == 2 and text in result.output, result.output


def test_showing_an_image_that_was_never_built_says_how_to_build_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("grayctl.lab.image.IMAGE_CACHE", tmp_path)
    result = CliRunner().invoke(cli, ["image", "show", "nosuch"], obj={})
    assert result.exit_code == 3 and "grayctl image build --name nosuch" in result.output
