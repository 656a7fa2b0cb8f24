"""``grayctl image build|ls|show`` — golden VM images for the qemu provider (grayctl.lab.image)."""

from __future__ import annotations

import json

import click

from grayctl.lab.image import DEFAULT_IMAGE, find_image, image_inputs, list_images, read_record, run_image_build


def _verbose() -> bool:
    root = click.get_current_context().find_root()
    return bool(root.obj and root.obj.get("verbose"))


@click.group()
def image() -> None:
    """Build and list golden VM images (Debian, for VM lab nodes)."""


@image.command()
@click.option("--name", default=DEFAULT_IMAGE, show_default=True, help="Image name (a lab's qemu.image).")
@click.option("--package", "packages", multiple=True, metavar="DEB", help="An extra Debian package (repeatable).")
@click.option("--size", default="3G", show_default=True, help="Root filesystem size.")
@click.option("--force", is_flag=True, help="Rebuild even if an image with the same inputs is cached.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def build(name: str, packages: tuple[str, ...], size: str, force: bool, as_json: bool) -> None:
    """Build the golden image (debootstrap; reused when its inputs are unchanged)."""
    inputs = image_inputs(name, extra_packages=packages, size=size)
    rec = run_image_build(inputs, force=force, log=(lambda m: None) if as_json else (lambda m: click.echo(f"  {m}")))
    if as_json:
        click.echo(json.dumps({k: v for k, v in rec.to_dict().items() if k != "record"} |
                              {"sha256": rec.record.get("files", {}).get("disk.qcow2")}, indent=2))
        return
    how = "reused (same inputs)" if rec.reused else f"built in {rec.seconds.get('total')} s"
    click.echo(f"image {rec.image} {rec.key}: {how}\n  {rec.dir}\n"
               f"  kernel {rec.record.get('kernel')}, disk sha256 {rec.record.get('files', {}).get('disk.qcow2')}")


@image.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ls(as_json: bool) -> None:
    """Cached images; '*' marks each name's latest."""
    images = list_images()
    if as_json:
        click.echo(json.dumps(images, indent=2))
        return
    if not images:
        click.echo("no images (grayctl image build)")
    for i in images:
        size = f"{(i['disk_bytes'] or 0) / 2**20:.0f} MiB"
        click.echo(f"{'*' if i['latest'] else ' '} {i['name']:<12} {i['key']}  {i['built']}  {i['kernel']}  {size}")


@image.command()
@click.argument("name_or_path", default=DEFAULT_IMAGE)
def show(name_or_path: str) -> None:
    """An image's record: inputs, package versions, sha256 of its files."""
    click.echo(json.dumps(read_record(find_image(name_or_path)), indent=2, sort_keys=True))
