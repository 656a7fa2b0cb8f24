# -*- coding: utf-8 -*-
"""Documentation stub of the grayctl_clock action plugin (plugins/action/grayctl_clock.py).

ansible-doc documents modules only; like ansible-core's own action plugins, this one is documented by
a module file of the same name. The action plugin does all the work on the controller; nothing here runs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: grayctl_clock
short_description: Measure the host clock's offset to the controller, or write the offsets on the controller
description:
  - Runs C(date +%s%N) on the host over the already open connection (no module upload), bracketed by two
    controller clock readings. The offset is the host's time minus the midpoint of the two readings; the
    round trip (rtt) between them bounds its error.
  - Repeats this O(samples) times and returns every sample plus the one with the smallest round trip.
  - With O(write), writes O(offsets) as JSON to that controller path instead (atomically, via a temporary
    file) and touches no host. One C(run_once) task replaces a copy task delegated to localhost.
  - This is an action plugin; the task runs on the controller.
options:
  samples:
    description: Number of measurements; the one with the smallest round trip is returned.
    type: int
    default: 3
  write:
    description: Absolute controller path; write O(offsets) there as JSON and measure nothing.
    type: path
  offsets:
    description:
      - "With O(write), the JSON to write, C({node: {offset_ns, rtt_ns, at, samples}})."
    type: dict
author: grayctl
"""

EXAMPLES = r"""
- name: Read the node clock around two controller timestamps
  grayctl.lab.grayctl_clock:
    samples: 5
  register: __clock

- name: Write every node's offset on the controller
  grayctl.lab.grayctl_clock:
    write: /srv/runs/{{ run_id }}/clock-start.json
    offsets: "{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, '__clock'))) }}"
  run_once: true
"""

RETURN = r"""
offset_ns:
  description: Host clock minus controller clock of the best sample, in nanoseconds.
  type: int
  returned: without write
rtt_ns:
  description: Round trip of the best sample (the offset's error bound), in nanoseconds.
  type: int
  returned: without write
samples:
  description: Every measurement, as C({offset_ns, rtt_ns}).
  type: list
  elements: dict
  returned: without write
at:
  description: When the measurement ended (controller clock, ISO 8601 UTC).
  type: str
  returned: without write
dest:
  description: The path written.
  type: str
  returned: with write
"""
