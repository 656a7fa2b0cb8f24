"""A real IPMI v2.0 (RMCP+) BMC for one netns lab node: OpenIPMI's ``ipmi_sim`` with a chassis
control program that powers the node.

The protocol side is not a stand-in: Debian's ``ipmi_sim`` (package openipmi) answers ipmitool's
``-I lanplus`` sessions, authentication, ``chassis bootdev``, ``chassis bootparam`` and ``power
status|on|off|cycle`` exactly as a BMC's firmware would. Only the machine behind it is: ipmi_sim
hands chassis state to an external program (lan.conf ``chassis_control``), which is this file's
``chassis`` command, called as ``<prog> get power boot`` / ``<prog> set power 0|1`` /
``<prog> set boot pxe|default|...``. It keeps the power and boot-device state in a directory and
powers the node through tests/standins/node_power.py: off kills its processes; on boots it
(detached, after a POST delay), from the network (reimage) when the boot device was pxe, from its
disk otherwise. A next-boot device applies once. Every call is logged (JSON lines).

  python tests/standins/ipmi_bmc.py config --dir D --port P --username U --password W \
      --lab-file LAB.yml --lab-home H --node node01 [--boot-delay S]   # writes D/lan.conf, D/sim.emu
  ipmi_sim -c D/lan.conf -f D/sim.emu -s D/state -n                   # then serve
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from node_power import NodePower, add_node_args

LAN_CONF = """\
# Written by tests/standins/ipmi_bmc.py: one BMC on loopback for the netns node {node}.
name "grayctl-{node}"
set_working_mc 0x20
  startlan 1
    addr {host} {port}
    priv_limit admin
    allowed_auths_callback md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid {guid}
  endlan
  chassis_control "{prog}"
  user 2 true "{username}" "{password}" admin 10 md5
"""
SIM_EMU = """\
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
mc_enable 0x20
"""


def write_config(directory: str | Path, *, host: str = "127.0.0.1", port: int, username: str, password: str,
                 lab_file: str, lab_home: str, node: str, boot_delay: float = 2.0) -> Path:
    """lan.conf, sim.emu, the chassis state and ipmi_sim's state dir in ``directory``; lan.conf's path."""
    d = Path(directory)
    (d / "state").mkdir(parents=True, exist_ok=True)
    (d / "chassis.json").write_text(json.dumps({
        "lab_file": str(lab_file), "lab_home": str(lab_home), "node": node, "boot_delay": boot_delay,
        "log": str(d / "chassis.jsonl")}))
    prog = " ".join(shlex.quote(x) for x in (sys.executable, str(Path(__file__).resolve()), "chassis", "--dir", str(d)))
    guid = (node.encode().hex() + "0" * 32)[:32]
    (d / "lan.conf").write_text(LAN_CONF.format(node=node, host=host, port=port, guid=guid, prog=prog,
                                                username=username, password=password))
    (d / "sim.emu").write_text(SIM_EMU)
    return d / "lan.conf"


def chassis(directory: Path, verb: str, args: list[str]) -> int:
    """ipmi_sim's external chassis control: ``get NAME...`` prints ``NAME:VALUE`` lines;
    ``set NAME VALUE [NAME VALUE...]`` acts."""
    cfg = json.loads((directory / "chassis.json").read_text())
    node = NodePower(cfg["lab_file"], cfg["lab_home"], cfg["node"], boot_delay=cfg["boot_delay"], log=cfg["log"])
    state_file = directory / "power.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {"power": None, "boot": "default"}
    if state["power"] is None:
        state["power"] = 1 if node.is_on() else 0
    node.note("ipmi", verb=verb, args=args)
    if verb == "get":
        for name in args:
            value = {"power": state["power"], "boot": state["boot"]}.get(name, 0)
            print(f"{name}:{value}")
    elif verb == "set":
        pairs = dict(zip(args[0::2], args[1::2]))
        if "boot" in pairs:
            state["boot"] = pairs["boot"]
        if "power" in pairs:
            want = int(pairs["power"])
            if want == 0 and state["power"]:
                node.power_off()
            elif want == 1 and not state["power"]:
                network = state["boot"] == "pxe"
                state["boot"] = "default"  # a next-boot device applies once
                node.boot_detached(network)
            state["power"] = want
    else:
        return 1
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({**state, "t": time.time()}))
    tmp.replace(state_file)
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["chassis"]:
        # <prog> chassis --dir D get|set ...  (ipmi_sim appends the verb and its arguments)
        directory = Path(argv[argv.index("--dir") + 1])
        rest = argv[argv.index("--dir") + 2:]
        return chassis(directory, rest[0], rest[1:])
    ap = argparse.ArgumentParser(description="configure ipmi_sim as the BMC of one netns lab node")
    ap.add_argument("action", choices=["config"])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--username", required=True)
    ap.add_argument("--password", required=True)
    add_node_args(ap, boot_delay=2.0, log=False)
    a = ap.parse_args(argv)
    print(write_config(a.dir, host=a.host, port=a.port, username=a.username, password=a.password,
                       lab_file=a.lab_file, lab_home=a.lab_home, node=a.node, boot_delay=a.boot_delay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
