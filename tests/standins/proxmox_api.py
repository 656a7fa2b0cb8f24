"""A fake Proxmox VE API for one guest, backed by one netns lab node, for roles/reimage_proxmox.

A stand-in (docs/reimage.md): no Proxmox host exists here. It answers on loopback over HTTPS
(self-signed) the endpoints the role calls, with Proxmox's own shapes (``{"data": ...}``, task
UPIDs, ``status``/``exitstatus``) and both of its authentication schemes:

  POST /api2/json/access/ticket                            form username, password -> ticket + CSRF token
       Authorization: PVEAPIToken=USER@REALM!NAME=SECRET   or  Cookie: PVEAuthCookie=<ticket>
       (a write with the cookie also needs the CSRFPreventionToken header, as on Proxmox)
  POST /api2/json/nodes/{node}/qemu/{vmid}/snapshot/{snap}/rollback   -> UPID (task)
  GET  /api2/json/nodes/{node}/qemu/{vmid}/status/current             -> {status: running|stopped}
  POST /api2/json/nodes/{node}/qemu/{vmid}/status/start               -> UPID (task)
  GET  /api2/json/nodes/{node}/tasks/{upid}/status                    -> {status: running|stopped, exitstatus}

The guest is the node: a rollback powers it off and restores its disk (a snapshot taken without
RAM leaves the guest stopped, as on Proxmox); a start boots it — reimaged (the lab's reset) when
its disk was restored since the last boot (tests/standins/node_power.py). Tasks take at least
``task_seconds`` so the role's polling is exercised. Every request is logged.
"""

from __future__ import annotations

import re
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

sys.path.insert(0, str(Path(__file__).resolve().parent))

from httpfake import App, JsonHandler, serve
from node_power import NodePower, add_node_args

GUEST = re.compile(r"\A/api2/json/nodes/(?P<node>[^/]+)/qemu/(?P<vmid>\d+)/(?P<rest>.+)\Z")
TASK = re.compile(r"\A/api2/json/nodes/(?P<node>[^/]+)/tasks/(?P<upid>[^/]+)/status\Z")


class ProxmoxApi(App):
    def __init__(self, *, pve_node: str, vmid: int, snapshots: list[str], token_id: str, token_secret: str,
                 username: str, password: str, node: NodePower, log: str, task_seconds: float = 1.5) -> None:
        super().__init__(log)
        self.pve_node, self.vmid, self.snapshots = pve_node, vmid, set(snapshots)
        self.token = f"PVEAPIToken={token_id}={token_secret}"
        self.username, self.password = username, password
        self.tickets: dict[str, str] = {}  # ticket -> CSRF token
        self.node = node
        self.status = "running" if node.is_on() else "stopped"
        self.restored = False
        self.tasks: dict[str, dict[str, Any]] = {}
        self.task_seconds = task_seconds

    # -- auth ----------------------------------------------------------------------------------
    def authorized(self, h: JsonHandler, method: str) -> bool:
        if h.headers.get("Authorization") == self.token:
            return True
        cookie = h.headers.get("Cookie") or ""
        m = re.search(r"PVEAuthCookie=([^;]+)", cookie)
        if not m or m.group(1) not in self.tickets:
            return False
        return method == "GET" or h.headers.get("CSRFPreventionToken") == self.tickets[m.group(1)]

    # -- routes --------------------------------------------------------------------------------
    def handle(self, h: JsonHandler, method: str, path: str, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        path = path.split("?", 1)[0]
        if method == "POST" and path == "/api2/json/access/ticket":
            form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            if form.get("username") != self.username or form.get("password") != self.password:
                return 401, {"data": None}, {}
            ticket = f"PVE:{self.username}:{secrets.token_hex(8)}"
            csrf = secrets.token_hex(8)
            with self.lock:
                self.tickets[ticket] = csrf
            return 200, {"data": {"ticket": ticket, "CSRFPreventionToken": csrf, "username": self.username}}, {}
        if not self.authorized(h, method):
            return 401, {"data": None}, {}
        m = TASK.match(path)
        if m and method == "GET":
            upid = unquote(m.group("upid"))
            with self.lock:
                task = self.tasks.get(upid)
            if task is None or m.group("node") != self.pve_node:
                return 500, {"data": None, "message": f"no such task '{upid}'"}, {}
            return 200, {"data": {"upid": upid, "node": self.pve_node, "type": task["type"],
                                  "status": task["status"],
                                  **({"exitstatus": task["exitstatus"]} if task["status"] == "stopped" else {})}}, {}
        m = GUEST.match(path)
        if not m or m.group("node") != self.pve_node or int(m.group("vmid")) != self.vmid:
            return 500, {"data": None, "message": f"Configuration file 'nodes/{self.pve_node}/qemu/"
                                                    f"{m.group('vmid') if m else '?'}.conf' does not exist"}, {}
        rest = m.group("rest")
        if method == "GET" and rest == "status/current":
            with self.lock:
                return 200, {"data": {"vmid": self.vmid, "status": self.status, "name": self.node.node}}, {}
        snap = re.fullmatch(r"snapshot/([^/]+)/rollback", rest)
        if method == "POST" and snap:
            name = unquote(snap.group(1))
            if name not in self.snapshots:
                return 500, {"data": None, "message": f"snapshot '{name}' does not exist"}, {}
            return 200, {"data": self.start_task("qmrollback", self.rollback)}, {}
        if method == "POST" and rest == "status/start":
            return 200, {"data": self.start_task("qmstart", self.start)}, {}
        return 501, {"data": None, "message": f"Method '{method} {path}' not implemented"}, {}

    # -- tasks ---------------------------------------------------------------------------------
    def start_task(self, kind: str, fn: Any) -> str:
        upid = (f"UPID:{self.pve_node}:{secrets.randbelow(1 << 24):08X}:{secrets.randbelow(1 << 24):08X}:"
                f"{int(time.time()):08X}:{kind}:{self.vmid}:root@pam:")
        with self.lock:
            self.tasks[upid] = {"type": kind, "status": "running"}

        def run() -> None:
            t0 = time.monotonic()
            try:
                fn()
                exit_status = "OK"
            except Exception as err:  # noqa: BLE001 - reported as the task's exit status
                exit_status = f"command failed: {err}"
            time.sleep(max(0.0, self.task_seconds - (time.monotonic() - t0)))
            with self.lock:
                self.tasks[upid].update(status="stopped", exitstatus=exit_status)

        threading.Thread(target=run, daemon=True).start()
        return upid

    def rollback(self) -> None:
        self.node.power_off()
        with self.lock:
            self.status, self.restored = "stopped", True

    def start(self) -> None:
        with self.lock:
            if self.status == "running":
                return
            network, self.restored = self.restored, False
        if self.node.boot(network) != 0:
            raise RuntimeError("the guest did not boot")
        with self.lock:
            self.status = "running"


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="fake Proxmox VE API for one guest backed by a netns lab node")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--pve-node", default="pve1")
    ap.add_argument("--vmid", type=int, required=True)
    ap.add_argument("--snapshot", action="append", default=[])
    ap.add_argument("--token-id", required=True)
    ap.add_argument("--token-secret", required=True)
    ap.add_argument("--username", required=True)
    ap.add_argument("--password", required=True)
    add_node_args(ap, boot_delay=1.0)
    a = ap.parse_args(argv)
    node = NodePower.from_args(a)
    serve(ProxmoxApi(pve_node=a.pve_node, vmid=a.vmid, snapshots=a.snapshot or ["golden"], token_id=a.token_id,
                     token_secret=a.token_secret, username=a.username, password=a.password, node=node,
                     log=a.log), a.host, a.port, a.cert, a.key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
