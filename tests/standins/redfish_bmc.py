"""A fake BMC speaking the part of Redfish that roles/reimage_redfish uses, for one netns lab node.

A stand-in (docs/reimage.md): no BMC exists on this machine, so this one answers on loopback over
HTTPS (self-signed) with HTTP basic auth, and its power actions really power the node
(tests/standins/node_power.py): the node's processes die, and it comes back on SSH after a boot
delay — reimaged when the boot override said Pxe (the golden image), as it was otherwise.

Endpoints (DMTF Redfish, DSP0266 / ComputerSystem schema):
  GET   /redfish/v1/                                   ServiceRoot (no auth, as on real BMCs)
  GET   /redfish/v1/Systems                            the collection: one member, Systems/1
  GET   /redfish/v1/Systems/1                          PowerState, Boot, Actions
  PATCH /redfish/v1/Systems/1  {"Boot": {...}}         BootSourceOverrideTarget/Enabled/Mode -> 204
  POST  /redfish/v1/Systems/1/Actions/ComputerSystem.Reset  {"ResetType": ...}            -> 204
A ``Once`` override is consumed by the next boot (it reads Disabled afterwards). Every request is
logged (tests/standins/httpfake.py).

  python tests/standins/redfish_bmc.py --port P --cert C --key K --username U --password W \
      --lab-file LAB.yml --lab-home DIR --node node01 --log bmc.jsonl
"""

from __future__ import annotations

import base64
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from httpfake import App, JsonHandler, serve
from node_power import NodePower, add_node_args

SYSTEM = "/redfish/v1/Systems/1"
RESET = SYSTEM + "/Actions/ComputerSystem.Reset"
TARGETS = ["None", "Pxe", "Hdd", "Cd", "Usb", "UefiHttp", "BiosSetup"]
ENABLED = ["Disabled", "Once", "Continuous"]
RESETS = ["On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "PowerCycle"]


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": f"Base.1.8.{code}", "message": message,
                      "@Message.ExtendedInfo": [{"MessageId": f"Base.1.8.{code}", "Message": message}]}}


class RedfishBmc(App):
    def __init__(self, *, username: str, password: str, node: NodePower, log: str) -> None:
        super().__init__(log)
        self.auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.node = node
        self.boot = {"BootSourceOverrideTarget": "None", "BootSourceOverrideEnabled": "Disabled",
                     "BootSourceOverrideMode": "UEFI"}
        self.power = "On" if node.is_on() else "Off"
        self.worker: threading.Thread | None = None

    def system(self) -> dict[str, Any]:
        return {
            "@odata.id": SYSTEM, "@odata.type": "#ComputerSystem.v1_13_0.ComputerSystem", "Id": "1",
            "Name": f"grayctl stand-in for {self.node.node}", "PowerState": self.power,
            "Boot": {**self.boot, "BootSourceOverrideTarget@Redfish.AllowableValues": TARGETS},
            "Actions": {"#ComputerSystem.Reset": {"target": RESET, "ResetType@Redfish.AllowableValues": RESETS}},
        }

    def handle(self, h: JsonHandler, method: str, path: str, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        import json

        path = path.split("?", 1)[0].rstrip("/") or "/"
        if method == "GET" and path == "/redfish/v1":
            return 200, {"@odata.id": "/redfish/v1/", "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
                         "Id": "RootService", "RedfishVersion": "1.8.0",
                         "Systems": {"@odata.id": "/redfish/v1/Systems"}}, {}
        if h.headers.get("Authorization") != self.auth:
            return 401, _error("InsufficientPrivilege", "Unauthorized: basic authentication failed"), \
                {"WWW-Authenticate": 'Basic realm="Redfish"'}
        body = json.loads(raw) if raw else {}
        with self.lock:
            if method == "GET" and path == "/redfish/v1/Systems":
                return 200, {"@odata.id": "/redfish/v1/Systems", "Members@odata.count": 1,
                             "Members": [{"@odata.id": SYSTEM}]}, {}
            if method == "GET" and path == SYSTEM:
                return 200, self.system(), {}
            if method == "PATCH" and path == SYSTEM:
                boot = body.get("Boot") if isinstance(body, dict) else None
                if not isinstance(boot, dict) or set(boot) - set(self.boot):
                    return 400, _error("PropertyUnknown", f"only Boot.{'/'.join(self.boot)} can be patched"), {}
                if boot.get("BootSourceOverrideTarget", "None") not in TARGETS or \
                        boot.get("BootSourceOverrideEnabled", "Once") not in ENABLED:
                    return 400, _error("PropertyValueNotInList", f"invalid Boot values {boot}"), {}
                self.boot.update(boot)
                return 204, None, {}
            if method == "POST" and path == RESET:
                kind = body.get("ResetType") if isinstance(body, dict) else None
                if kind not in RESETS:
                    return 400, _error("ActionParameterNotSupported", f"ResetType {kind!r}"), {}
                if self.worker and self.worker.is_alive():
                    return 409, _error("ResourceInUse", "a power action is in progress"), {}
                self.worker = threading.Thread(target=self.reset, args=(kind,), daemon=True)
                self.worker.start()
                return 204, None, {}
        return 404, _error("ResourceMissingAtURI", f"{method} {path}"), {}

    def reset(self, kind: str) -> None:
        """The machine's side of a reset: off, then (unless it was an off) a boot that consumes a
        Once override."""
        if kind in ("ForceOff", "GracefulShutdown", "ForceRestart", "GracefulRestart", "PowerCycle"):
            with self.lock:
                self.power = "Off"
            self.node.power_off()
            if kind in ("ForceOff", "GracefulShutdown"):
                return
        with self.lock:
            network = self.boot["BootSourceOverrideTarget"] == "Pxe" and \
                self.boot["BootSourceOverrideEnabled"] in ("Once", "Continuous")
            if self.boot["BootSourceOverrideEnabled"] == "Once":
                self.boot["BootSourceOverrideEnabled"] = "Disabled"
            self.power = "On"
        self.node.boot(network)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="fake Redfish BMC for one netns lab node")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--username", required=True)
    ap.add_argument("--password", required=True)
    add_node_args(ap, boot_delay=2.0)
    a = ap.parse_args(argv)
    node = NodePower.from_args(a)
    serve(RedfishBmc(username=a.username, password=a.password, node=node, log=a.log), a.host, a.port,
          a.cert, a.key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
