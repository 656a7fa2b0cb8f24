# -*- coding: utf-8 -*-
"""Action plugin: measure this host's clock offset to the controller (see grayctl/clock.py).

Runs ``date +%s%N`` on the host over the already open connection (no module upload), bracketed by two
controller ``time.time_ns()`` readings; offset = node - midpoint, rtt = the bracket (the error bound).
Repeats ``samples`` times and returns every sample plus the one with the smallest rtt.
With ``write`` (and ``offsets``), writes that JSON on the controller instead, touching no host: a copy
task delegated to localhost costs two local module runs (stat, copy), ~1 s of a run's wall time.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time
from datetime import datetime, timezone

from ansible.plugins.action import ActionBase

# Documented by the module stub plugins/modules/grayctl_clock.py (ansible-doc reads modules only).


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("samples", "write", "offsets"))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        dest = self._task.args.get("write")
        if dest is not None:
            if not os.path.isabs(str(dest)):
                result.update(failed=True, msg="write: %r is not an absolute controller path" % dest)
                return result
            offsets = self._task.args.get("offsets") or {}
            if not isinstance(offsets, dict):
                result.update(failed=True, msg="offsets: a mapping {node: {...}} is required, got %r" % type(offsets))
                return result
            text = json.dumps(offsets, indent=2, sort_keys=True) + "\n"
            tmp_path = "%s.%d.tmp" % (dest, os.getpid())
            with open(tmp_path, "w") as fh:
                fh.write(text)
            os.replace(tmp_path, str(dest))
            result.update(changed=True, dest=str(dest))
            return result
        samples = int(self._task.args.get("samples", 3))
        out = []
        for _ in range(max(1, samples)):
            t0 = time.time_ns()
            res = self._low_level_execute_command("date +%s%N")
            t1 = time.time_ns()
            text = (res.get("stdout") or "").strip()
            if res.get("rc") != 0 or not text.isdigit():
                result.update(failed=True, msg="date +%%s%%N failed: %s %s" % (text, res.get("stderr", "")))
                return result
            node = int(text)
            out.append({"offset_ns": node - (t0 + t1) // 2, "rtt_ns": t1 - t0})
        best = min(out, key=lambda s: s["rtt_ns"])
        result.update(changed=False, offset_ns=best["offset_ns"], rtt_ns=best["rtt_ns"], samples=out,
                      at=datetime.now(timezone.utc).isoformat())
        return result
