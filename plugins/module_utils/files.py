# -*- coding: utf-8 -*-
"""Files the grayctl modules read and write: plain reads that tolerate absence, atomic writes.

An atomic write goes to a temporary file in the same directory and is renamed over the target,
so a reader (or a crash) sees the old content or the new, never half of it.
Stdlib only: modules that use this run on lab nodes with the node's python3.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile


def read_text(path, strip=True):
    """The file's text (stripped unless ``strip`` is False), or None when it cannot be read."""
    try:
        with open(path) as fh:
            text = fh.read()
    except (OSError, IOError):
        return None
    return text.strip() if strip else text


def write_atomic(path, text, mode=0o644, fsync=False):
    """Replace ``path`` with ``text`` (mode ``mode``) in one rename; ``fsync`` for state a crash must not lose."""
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def differs(path, text, mode):
    """Whether ``path`` lacks exactly ``text`` with exactly ``mode`` (what a write would change)."""
    try:
        with open(path, "rb") as fh:
            same = fh.read() == text.encode("utf-8")
        return not same or (os.stat(path).st_mode & 0o7777) != mode
    except (OSError, IOError):
        return True


def write_if_changed(path, text, mode=0o644, directory_mode=None):
    """Write ``path`` atomically unless it already holds ``text`` with ``mode``; True if written.

    With ``directory_mode``, missing parent directories are made with it.
    """
    if not differs(path, text, mode):
        return False
    directory = os.path.dirname(path)
    if directory_mode is not None and directory and not os.path.isdir(directory):
        os.makedirs(directory, directory_mode)
    write_atomic(path, text, mode)
    return True
