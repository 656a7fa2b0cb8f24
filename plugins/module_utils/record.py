# -*- coding: utf-8 -*-
"""A lab provider's record (``<lab_dir>/<file>.json``): its plan and every resource it made.

A resource is appended, and the file atomically rewritten and synced, *before* it is created, and
dropped once it is verifiably gone, so removal after a crash works from the record alone, never
by name patterns.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

from ansible_collections.grayctl.lab.plugins.module_utils.files import write_atomic

FORMAT = 1


class RecordError(Exception):
    """The record cannot be read or was written by another format."""


class Record:
    def __init__(self, path, fields, check_mode=False, what="lab record"):
        """Read ``path``, or start from ``fields`` (format, status and resources added) when absent."""
        self.path = path
        self.check_mode = check_mode
        self.data = dict({"format": FORMAT, "status": "down", "plan": None}, **fields)
        self.data["resources"] = []
        if os.path.exists(path):
            try:
                with open(path) as fh:
                    self.data = json.load(fh)
            except (OSError, ValueError) as err:
                raise RecordError("cannot read the %s %s: %s" % (what, path, err)) from None
            if self.data.get("format") != FORMAT:
                raise RecordError("%s has format %r; this module writes format %d"
                                  % (path, self.data.get("format"), FORMAT))

    @property
    def resources(self):
        return self.data["resources"]

    def ids(self):
        return set(r["id"] for r in self.resources)

    def save(self):
        if self.check_mode:
            return
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n", 0o600, fsync=True)

    def set_status(self, status):
        if self.data.get("status") != status:
            self.data["status"] = status
            self.save()

    def append(self, resources):
        """Record resources not yet recorded; the file is on disk before the caller creates them."""
        known = self.ids()
        new = [r for r in resources if r["id"] not in known]
        if new:
            self.resources.extend(new)
            self.save()
        return new

    def drop(self, ids):
        ids = set(ids)
        if ids:
            self.data["resources"] = [r for r in self.resources if r["id"] not in ids]
            self.save()
