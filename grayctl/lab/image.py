"""Golden VM images for the qemu provider: build, cache, find, list.

An image is a directory under the cache (``/var/cache/grayctl/images/<name>/<key>/``)::

    disk.qcow2    the root filesystem (ext4 on the whole disk, no partition table, no bootloader)
    vmlinuz       the guest's Debian kernel, booted directly (qemu -kernel)
    initrd.img    its initramfs (qemu -initrd)
    image.json    inputs, key, package versions, sha256 of each file, build time

``<key>`` is the sha256 (16 hex) of the *inputs*: suite, mirror, package list, the guest files
written below, size and SOURCE_DATE_EPOCH. A build
whose key exists is reused (``grayctl image build`` is a no-op then), so CI rebuilds only when an
input changes. ``<name>/latest`` points at the newest build; the qemu_lab module resolves an image
name through it.

How an image is made (root, no loop device, no mount of the image):
  debootstrap (minbase + BASE_PACKAGES, .debs cached) -> guest files (seed service, sshd drop-in,
  interface names, the grayctl mount) -> initramfs regenerated -> host keys, machine-id, apt lists,
  logs removed; mtimes clamped to SOURCE_DATE_EPOCH -> ``mkfs.ext4 -d`` with a fixed UUID and hash
  seed -> ``qemu-img convert``.

grayctl itself is not in the image: like a netns node, which sees the controller's filesystem, a VM
node sees the controller's ``grayctl`` package, shared read-only by qemu (virtio-9p, mount tag
``grayctl``) and mounted at /opt/grayctl/grayctl, on the guest's sys.path through a .pth file. So
nodes always run the controller's grayctl, and a change to grayctl does not rebuild the image.

Per-node identity never lives in the image: the node's hostname and machine-id come from the
kernel command line (``systemd.hostname=``, ``systemd.machine_id=``, derived from lab and node),
its addresses, SSH host key and authorized key from a fw_cfg blob that the seed service copies to
/run at boot. So two nodes booted from one image differ only in /run, and two builds from the same
inputs give the same fingerprint (same packages, kernel, files; roles/baseline compares those).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from grayctl.errors import InputError, LabError, Problem

__all__ = ["ImageInputs", "image_inputs", "find_image", "list_images", "run_image_build", "IMAGE_CACHE",
           "DEFAULT_IMAGE"]

IMAGE_CACHE = Path(os.environ.get("GRAYCTL_IMAGE_CACHE") or "/var/cache/grayctl/images")
DEB_CACHE_NAME = ".debs"  # debootstrap's download cache, inside IMAGE_CACHE
DEFAULT_IMAGE = "debian12"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SIZE = "3G"
# 2023-06-10, Debian 12.0's release day: fixed so that rebuilds stamp the same times
SOURCE_DATE_EPOCH = 1686355200
RECIPE = 1  # bump when the build steps below change in a way the inputs do not show
FS_UUID = "6a0f3c53-5f2b-4d1e-9a39-67726179637a"  # fixed: same inputs, same filesystem identity
FS_HASH_SEED = "2b7e1516-28ae-4d2a-a6ab-f7158809cf4f"
NAME_RE = re.compile(r"\A[a-z][a-z0-9-]{0,31}\Z")

# What a node runs (roles/*/tasks): sshd and Python for Ansible; ip/tc, nft, iptables for the
# fault roles; stress-ng for stress faults; Debian's kernel, whose sch_netem is the point of VMs.
# python3-aiohttp/-uvloop/-yaml are grayctl's node-side imports available from Debian.
BASE_PACKAGES = [
    "systemd", "systemd-sysv", "udev", "dbus", "kmod", "linux-image-amd64", "initramfs-tools",
    "openssh-server", "python3", "python3-yaml", "python3-aiohttp", "python3-uvloop",
    "iproute2", "nftables", "iptables", "stress-ng", "procps", "psmisc", "iputils-ping", "util-linux",
]

# Guest files: path -> (mode, text). Part of the inputs: a change rebuilds the image.
SEED_SCRIPT = '''#!/usr/bin/python3 -IS
"""grayctl node seed: this node's addresses, SSH host key and authorized key from qemu fw_cfg.

Written to /run only, so the disk stays the golden image; rerun at every boot.
"""
import json
import os
import subprocess

SEED = "/sys/firmware/qemu_fw_cfg/by_name/opt/grayctl/seed/raw"


def write(path, text, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


if not os.path.exists(SEED):
    subprocess.run(["modprobe", "qemu_fw_cfg"], check=False)
with open(SEED) as fh:
    seed = json.load(fh)
os.makedirs("/run/systemd/network", exist_ok=True)
for iface in ("mgmt", "data"):
    write("/run/systemd/network/10-grayctl-%s.network" % iface,
          "[Match]\\nName=%s\\n\\n[Network]\\nAddress=%s\\nLinkLocalAddressing=no\\nIPv6AcceptRA=no\\n"
          % (iface, seed[iface]), 0o644)
os.makedirs("/run/grayctl", mode=0o700, exist_ok=True)
write("/run/grayctl/ssh_host_ed25519_key", seed["host_key"], 0o600)
write("/run/grayctl/ssh_host_ed25519_key.pub", seed["host_key_pub"], 0o644)
write("/run/grayctl/authorized_keys", seed["authorized_keys"], 0o600)
'''

GUEST_FILES: dict[str, tuple[int, str]] = {
    "usr/local/sbin/grayctl-seed": (0o755, SEED_SCRIPT),
    "etc/systemd/system/grayctl-seed.service": (0o644, """\
[Unit]
Description=grayctl node seed (addresses, SSH keys) from qemu fw_cfg
DefaultDependencies=no
After=local-fs.target systemd-modules-load.service
Before=sysinit.target systemd-networkd.service ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/grayctl-seed

[Install]
WantedBy=sysinit.target
"""),
    # qemu_lab gives the management NIC PCI slot 3 and the data NIC slot 4: names by slot, not MAC,
    # so one image serves every node
    "etc/systemd/network/10-grayctl-mgmt.link": (0o644, "[Match]\nPath=pci-0000:00:03.0\n\n[Link]\nName=mgmt\n"),
    "etc/systemd/network/10-grayctl-data.link": (0o644, "[Match]\nPath=pci-0000:00:04.0\n\n[Link]\nName=data\n"),
    "etc/modules-load.d/grayctl.conf": (0o644, "qemu_fw_cfg\nsch_netem\n"),
    # a small initramfs (what a VM's root needs) instead of 'most': less to unpack at every boot
    "etc/initramfs-tools/conf.d/grayctl.conf": (0o644, "MODULES=list\n"),
    "etc/initramfs-tools/modules": (0o644, "virtio_pci\nvirtio_blk\next4\n"),
    "etc/ssh/sshd_config.d/grayctl.conf": (0o644, """\
# grayctl lab node: the lab's host key and client key, put in /run by grayctl-seed at boot
HostKey /run/grayctl/ssh_host_ed25519_key
AuthorizedKeysFile /run/grayctl/authorized_keys .ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 100:30:200
MaxSessions 100
"""),
    # the controller's grayctl package, shared read-only by qemu_lab (-virtfs ... mount_tag=grayctl)
    "etc/fstab": (0o644, "/dev/vda / ext4 rw,errors=remount-ro 0 0\n"
                         "grayctl /opt/grayctl/grayctl 9p trans=virtio,version=9p2000.L,ro,msize=262144,nofail 0 0\n"),
    "usr/lib/python3/dist-packages/grayctl-share.pth": (0o644, "/opt/grayctl\n"),
    "opt/grayctl/grayctl/.mountpoint": (0o644, ""),
    "etc/hostname": (0o644, "grayctl-node\n"),
    "etc/hosts": (0o644, "127.0.0.1 localhost\n"),
    # the baseline role's state directory on a VM node (grayctl_state_dir); empty in the image
    "var/lib/grayctl/node/state/.keep": (0o644, ""),
}
ENABLE = {  # systemd units enabled (or masked: -> /dev/null) by symlink; no systemctl in a chroot
    # boot-time work a disposable node does not need (seconds each under TCG)
    "etc/systemd/system/e2scrub_reap.service": "/dev/null",
    "etc/systemd/system/systemd-binfmt.service": "/dev/null",
    "etc/systemd/system/sysinit.target.wants/grayctl-seed.service": "/etc/systemd/system/grayctl-seed.service",
    "etc/systemd/system/multi-user.target.wants/systemd-networkd.service":
        "/lib/systemd/system/systemd-networkd.service",
    "etc/systemd/system/sockets.target.wants/systemd-networkd.socket": "/lib/systemd/system/systemd-networkd.socket",
}
# Removed after the packages are in: per-machine identity and build leftovers.
SCRUB = ["etc/ssh/ssh_host_*", "etc/machine-id", "var/lib/dbus/machine-id", "var/lib/apt/lists/*",
         "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/log/*.log", "var/log/apt/*",
         "var/cache/debconf/*-old", "var/lib/dpkg/*-old", "tmp/*", "var/tmp/*", "root/.bash_history",
    "opt/grayctl/grayctl/.mountpoint",
         "var/lib/grayctl/node/state/.keep", "boot/*.dpkg-bak", "boot/*.new"]


@dataclass(frozen=True)
class ImageInputs:
    """Everything an image is made from; its sha256 is the cache key."""

    name: str
    suite: str
    mirror: str
    packages: tuple[str, ...]
    size: str
    source_date_epoch: int
    recipe: int
    guest_files_sha256: str

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def dir(self) -> Path:
        return IMAGE_CACHE / self.name / self.key


def _guest_files_sha256() -> str:
    h = hashlib.sha256()
    for path in sorted(GUEST_FILES):
        mode, text = GUEST_FILES[path]
        h.update(f"{path}\0{mode:o}\0{text}\0".encode())
    for path in sorted(ENABLE):
        h.update(f"{path}\0{ENABLE[path]}\0".encode())
    h.update("\0".join(SCRUB).encode())
    return h.hexdigest()


def host_mirror() -> str:
    """The Debian mirror this host's apt already uses (so a build needs no other network)."""
    uris: list[str] = []
    for f in [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d").glob("*")):
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.suffix == ".sources":
            for block in text.split("\n\n"):
                u = re.search(r"^URIs:\s*(\S+)", block, re.M)
                s = re.search(r"^Suites:\s*(.+)$", block, re.M)
                if u and s and SUITE in s.group(1).split():
                    uris.append(u.group(1))
        else:
            for m in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):
                if m.group(2) == SUITE:
                    uris.append(m.group(1))
    return uris[0].rstrip("/") if uris else DEFAULT_MIRROR


def image_inputs(name: str = DEFAULT_IMAGE, *, extra_packages: tuple[str, ...] = (), mirror: str | None = None,
                 size: str = DEFAULT_SIZE) -> ImageInputs:
    if not NAME_RE.match(name):
        raise InputError(Problem(f"{name!r} is not a usable image name", path="--name",
                                 expected="a-z, 0-9 and '-', starting with a letter, at most 32 characters"))
    for p in extra_packages:
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", p):
            raise InputError(Problem(f"{p!r} is not a Debian package name", path="--package"))
    if not re.fullmatch(r"[0-9]+[MG]", size):
        raise InputError(Problem(f"{size!r} is not a disk size", path="--size", expected="e.g. 3G or 2048M"))
    return ImageInputs(
        name=name, suite=SUITE, mirror=mirror or host_mirror(),
        packages=tuple(sorted(set(BASE_PACKAGES) | set(extra_packages))), size=size,
        source_date_epoch=SOURCE_DATE_EPOCH, recipe=RECIPE, guest_files_sha256=_guest_files_sha256(),
    )


# ---------------------------------------------------------------------------
# Finding and listing


def read_record(image_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((image_dir / "image.json").read_text())
    except (OSError, ValueError) as err:
        raise LabError(f"{image_dir} is not a grayctl image ({err})",
                       hint="build one with 'grayctl image build'") from None


def find_image(name_or_path: str = DEFAULT_IMAGE) -> Path:
    """An image directory: an absolute path to one, or a name resolved through ``<name>/latest``."""
    if name_or_path.startswith("/"):
        path = Path(name_or_path)
        if path.name == "image.json":
            path = path.parent
    else:
        path = IMAGE_CACHE / name_or_path / "latest"
    if not (path / "image.json").is_file():
        build = "grayctl image build" + (f" --name {name_or_path}" if not name_or_path.startswith("/") else "")
        raise LabError(f"no image {name_or_path!r} ({path} has no image.json)", hint=f"build it with '{build}'")
    return path.resolve()


def list_images() -> list[dict[str, Any]]:
    out = []
    if not IMAGE_CACHE.is_dir():
        return out
    for rec_file in sorted(IMAGE_CACHE.glob("*/*/image.json")):
        d = rec_file.parent
        try:
            rec = json.loads(rec_file.read_text())
        except (OSError, ValueError):
            continue
        latest = (d.parent / "latest").resolve() == d.resolve() if (d.parent / "latest").exists() else False
        out.append({"name": rec.get("name"), "key": rec.get("key"), "dir": str(d), "latest": latest,
                    "built": rec.get("built"), "kernel": rec.get("kernel"),
                    "disk_bytes": (d / "disk.qcow2").stat().st_size if (d / "disk.qcow2").exists() else None,
                    "sha256": rec.get("files", {}).get("disk.qcow2")})
    return out


# ---------------------------------------------------------------------------
# Building


@dataclass
class BuildRecord:
    image: str
    dir: str
    key: str
    reused: bool
    seconds: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tool(name: str) -> str:
    for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    found = shutil.which(name)
    if not found:
        raise LabError(f"'{name}' is not installed; an image build needs debootstrap, mkfs.ext4 and qemu-img",
                       hint="apt-get install debootstrap e2fsprogs qemu-utils (or 'grayctl lab bootstrap')")
    return found


def _run(argv: list[str], env: dict[str, str] | None = None, what: str = "") -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-1500:]
        raise LabError(f"{what or argv[0]} failed (exit {proc.returncode}): {tail}")
    return proc.stdout


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _chroot(root: Path, script: str, env: dict[str, str]) -> str:
    """Run a shell script in the tree with /proc, /sys, /dev mounted in a private mount namespace.

    The namespace dies with the command, so its mounts cannot be left behind.
    """
    inner = ('mount -t proc proc "$0/proc" && mount -t sysfs sysfs "$0/sys" && mount --rbind /dev "$0/dev" '
             '&& exec chroot "$0" /bin/sh -ec "$1"')
    return _run([_tool("unshare"), "--mount", "--propagation", "private", "--fork", "/bin/sh", "-c", inner,
                 str(root), script], env=env, what="a chroot step")


def _tree_sha256(root: Path) -> str:
    """Paths, modes, owners, link targets and contents of the tree (not times): what a rebuild must match."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(f"{os.path.relpath(p, root)}\0{st.st_mode:o}\0{st.st_uid}:{st.st_gid}\0".encode())
            if os.path.islink(p):
                h.update(os.readlink(p).encode())
            elif os.path.isfile(p) and not os.path.isdir(p):
                with open(p, "rb") as fh:
                    h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


def run_image_build(inputs: ImageInputs, *, force: bool = False, keep_tree: bool = False,
                    log: Callable[[str], None] = lambda _m: None) -> BuildRecord:
    """Build the image for ``inputs`` into the cache, or reuse the build with the same key."""
    if os.geteuid() != 0:
        raise LabError("'image build' needs root (debootstrap, chroot, file ownership in the image)",
                       hint="run it as root, e.g. sudo grayctl image build")
    final = inputs.dir
    if (final / "image.json").is_file() and not force:
        _point_latest(final)
        return BuildRecord(inputs.name, str(final), inputs.key, True, record=read_record(final))
    for t in ("debootstrap", "mkfs.ext4", "qemu-img", "unshare", "chroot"):
        _tool(t)
    IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    (IMAGE_CACHE / inputs.name).mkdir(exist_ok=True)
    debs = IMAGE_CACHE / DEB_CACHE_NAME
    debs.mkdir(exist_ok=True)
    # everything happens in a work dir next to the final one, renamed into place at the end:
    # an interrupted build leaves no half image under the key (the work dir is removed in finally)
    _remove_stale_builds(IMAGE_CACHE / inputs.name)
    work = Path(tempfile.mkdtemp(prefix=f".build-{os.getpid()}-", dir=IMAGE_CACHE / inputs.name))
    root = work / "root"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
           "SOURCE_DATE_EPOCH": str(inputs.source_date_epoch), "PYTHONHASHSEED": "0"}
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    previous = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a CI timeout) unwinds like Ctrl-C, so the work dir below is removed
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        log(f"debootstrap {inputs.suite} from {inputs.mirror} ({len(inputs.packages)} packages)")
        _run([_tool("debootstrap"), "--variant=minbase", f"--cache-dir={debs}",
              "--include=" + ",".join(inputs.packages), inputs.suite, str(root), inputs.mirror],
             env=env, what="debootstrap")
        seconds["debootstrap"] = round(time.monotonic() - t0, 1)

        t1 = time.monotonic()
        log("guest files, initramfs")
        release = _release_date(root)
        for rel, (mode, text) in GUEST_FILES.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
            os.chmod(p, mode)
        for rel, target in ENABLE.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.is_symlink() or p.exists():
                p.unlink()
            p.symlink_to(target)
        _chroot(root, "update-initramfs -u -k all", env)
        for pattern in SCRUB:
            for p in root.glob(pattern):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
        (root / "etc/machine-id").write_text("")  # empty: systemd takes systemd.machine_id= from the cmdline
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        if not kernels:
            raise LabError("the image has no kernel in /boot (linux-image-amd64 did not install)")
        kver = kernels[-1].name[len("vmlinuz-"):]
        shutil.copyfile(kernels[-1], work / "vmlinuz")
        shutil.copyfile(root / "boot" / f"initrd.img-{kver}", work / "initrd.img")
        packages = dict(line.split("\t", 1) for line in _run(
            ["chroot", str(root), "dpkg-query", "-W", "-f", "${Package}\t${Version}\n"], env=env).splitlines())
        _clamp_times(root, inputs.source_date_epoch)
        tree = _tree_sha256(root)
        seconds["configure"] = round(time.monotonic() - t1, 1)

        t2 = time.monotonic()
        log("mkfs.ext4 -d, qemu-img convert")
        raw = work / "disk.raw"
        _run([_tool("mkfs.ext4"), "-q", "-F", "-L", "grayctl-root", "-U", FS_UUID,
              "-E", f"hash_seed={FS_HASH_SEED},root_owner=0:0", "-d", str(root), str(raw), inputs.size],
             env={**env, "E2FSPROGS_FAKE_TIME": str(inputs.source_date_epoch)}, what="mkfs.ext4 -d")
        _run([_tool("qemu-img"), "convert", "-f", "raw", "-O", "qcow2", str(raw), str(work / "disk.qcow2")],
             what="qemu-img convert")
        raw.unlink()
        seconds["disk"] = round(time.monotonic() - t2, 1)
        if not keep_tree:
            shutil.rmtree(root)
        seconds["total"] = round(time.monotonic() - t0, 1)
        record = {
            "name": inputs.name, "key": inputs.key, "inputs": asdict(inputs),
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "build_seconds": seconds,
            "kernel": kver, "release_date": release, "tree_sha256": tree,
            "files": {f: _sha256(work / f) for f in ("disk.qcow2", "vmlinuz", "initrd.img")},
            "packages": packages,
        }
        (work / "image.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        for f in ("disk.qcow2", "vmlinuz", "initrd.img", "image.json"):
            os.chmod(work / f, 0o444)  # golden: overlays read it, nothing writes it
        if final.exists():
            shutil.rmtree(final)
        os.rename(work, final)
        _point_latest(final)
        return BuildRecord(inputs.name, str(final), inputs.key, False, seconds, record)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _remove_stale_builds(parent: Path) -> None:
    """Work dirs of builds whose process is gone (killed before its cleanup ran)."""
    for d in parent.glob(".build-*"):
        m = re.match(r"\.build-([0-9]+)-", d.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            shutil.rmtree(d, ignore_errors=True)


def _point_latest(final: Path) -> None:
    link = final.parent / "latest"
    tmp = final.parent / ".latest.tmp"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(final.name)
    os.replace(tmp, link)


def _release_date(root: Path) -> str | None:
    for f in (root / "var/lib/apt/lists").glob("*_Release"):
        m = re.search(r"^Date:\s*(.+)$", f.read_text(errors="replace"), re.M)
        if m:
            return m.group(1).strip()
    return None


def _clamp_times(root: Path, epoch: int) -> None:
    """No file newer than SOURCE_DATE_EPOCH (what reproducible-builds tools do)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            try:
                if os.lstat(p).st_mtime > epoch:
                    os.utime(p, (epoch, epoch), follow_symlinks=False)
            except OSError:
                pass
    os.utime(root, (epoch, epoch))
