#!/usr/bin/python3
# -*- coding: utf-8 -*-
"""Write the fingerprint records of many nodes on the controller, in one call.

The baseline role runs this once per play (``run_once`` + ``delegate_to: localhost``) instead of
one ``copy`` per node: a copy costs two module executions on the controller per node, which for
16 nodes was most of the playbook's time. Files are written atomically and only when their
content changed, so re-recording an unchanged node reports no change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: grayctl_baseline_store
short_description: Write several text files atomically, only when their content changed
description:
  - Writes each O(files) entry to its path (parent directories created), atomically, when the
    content differs from what is there. Supports check mode.
version_added: "0.1.0"
author: grayctl
options:
  files:
    description: The files to write.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path of the file.
        type: path
        required: true
      content:
        description: The file's full content.
        type: str
        required: true
  mode:
    description: Permissions of written files.
    type: raw
    default: "0644"
  directory_mode:
    description: Permissions of directories this module creates.
    type: raw
    default: "0755"
"""

EXAMPLES = r"""
- name: Write the golden fingerprints on the controller
  grayctl.lab.grayctl_baseline_store:
    files:
      - path: /var/lib/grayctl/labs/local/baseline/golden/node01.json
        content: "{}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
written:
  description: Paths whose content changed (or would change in check mode).
  returned: always
  type: list
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.grayctl.lab.plugins.module_utils.files import differs, write_if_changed


def _mode(value):
    return int(str(value), 8) if not isinstance(value, int) else value


# Module level so tests/lint/test_ansible_doc.py can check DOCUMENTATION against it.
ARGUMENT_SPEC = dict(
    files=dict(
        type="list",
        elements="dict",
        required=True,
        options=dict(path=dict(type="path", required=True), content=dict(type="str", required=True)),
    ),
    mode=dict(type="raw", default="0644"),
    directory_mode=dict(type="raw", default="0755"),
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    mode, directory_mode = _mode(module.params["mode"]), _mode(module.params["directory_mode"])
    written = []
    for entry in module.params["files"]:
        path = entry["path"]
        if not os.path.isabs(path):
            module.fail_json(msg="path must be absolute: %s" % path)
        try:
            if module.check_mode:
                changed = differs(path, entry["content"], mode)
            else:
                changed = write_if_changed(path, entry["content"], mode, directory_mode)
        except (IOError, OSError) as exc:
            module.fail_json(msg="cannot write %s: %s" % (path, exc), written=written)
        if changed:
            written.append(path)
    module.exit_json(changed=bool(written), written=written)


if __name__ == "__main__":
    main()
