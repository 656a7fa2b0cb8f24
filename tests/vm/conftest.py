"""The vm tier: real qemu VMs from the golden image, in a lab mixed with netns nodes.

Run: scripts/test vm (or ``pytest -m vm tests/vm``). Needs root, qemu-system-x86, qemu-utils and
debootstrap (installed by ``grayctl lab bootstrap``). The first run builds the image (minutes);
later runs reuse it from /var/cache/grayctl/images.
"""
