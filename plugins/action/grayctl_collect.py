# -*- coding: utf-8 -*-
"""Action plugin: run the grayctl_collect module on the node, write the files it returns on the controller.

One module call per node replaces a find task plus a fetch loop (each fetch is several round trips).
Small files come back inline in the module's result (zlib, base64) and are written here; files above
``inline_max`` are fetched over the connection. The file data never reaches the callbacks' results.
A local file whose content is already the same is left alone (not changed), so a re-run is idempotent.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import os
import zlib

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

# Arguments taken here and not passed to the module (which gets send = dest is given); documented,
# with the module's, in plugins/modules/grayctl_collect.py (ansible-doc reads that file).
ACTION_ARGS = ("dest",)


def _sha1(path):
    h = hashlib.sha1()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except (OSError, IOError):
        return None
    return h.hexdigest()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = dict(self._task.args)
        own = dict((k, args.pop(k)) for k in ACTION_ARGS if k in args)
        dest = own.get("dest")
        if dest is not None and not os.path.isabs(str(dest)):
            raise AnsibleActionFail("grayctl_collect: dest must be an absolute controller path, got %r" % dest)
        args["send"] = dest is not None
        try:
            res = self._execute_module(module_name="grayctl.lab.grayctl_collect", module_args=args,
                                       task_vars=task_vars)
            files = res.get("files") or []
            written = []
            if dest is not None and not res.get("failed"):
                root = os.path.realpath(str(dest))
                for f in files:
                    local = os.path.realpath(os.path.join(root, f["path"]))
                    if not local.startswith(root + os.sep):
                        raise AnsibleActionFail("grayctl_collect: %r leaves %s" % (f["path"], root))
                    if _sha1(local) == f["sha1"]:
                        continue
                    os.makedirs(os.path.dirname(local), exist_ok=True)
                    tmp_path = local + ".part"
                    if "data" in f:
                        with open(tmp_path, "wb") as fh:
                            fh.write(zlib.decompress(base64.b64decode(f["data"])))
                    else:
                        self._connection.fetch_file(f["abs"], tmp_path)
                    if _sha1(tmp_path) != f["sha1"]:
                        os.unlink(tmp_path)
                        raise AnsibleActionFail("grayctl_collect: %s changed while it was copied" % f["abs"])
                    os.replace(tmp_path, local)
                    written.append(local)
            for f in files:
                f.pop("data", None)
            res["written"] = written
            res["changed"] = bool(res.get("changed")) or bool(written)
            result.update(res)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
