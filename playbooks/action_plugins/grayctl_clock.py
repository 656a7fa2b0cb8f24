# -*- coding: utf-8 -*-
"""Action plugin: measure this host's clock offset to the controller (see grayctl/clock.py).

Runs ``date +%s%N`` on the host over the already open connection (no module upload), bracketed by two
controller ``time.time_ns()`` readings; offset = node - midpoint, rtt = the bracket (the error bound).
Repeats ``samples`` times and returns every sample plus the one with the smallest rtt.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
from datetime import datetime, timezone

from ansible.plugins.action import ActionBase

DOCUMENTATION = r"""
---
module: grayctl_clock
short_description: Measure the host clock's offset to the controller
options:
  samples: {description: Number of measurements; the one with the smallest round trip is kept., type: int, default: 3}
"""


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("samples",))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
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
