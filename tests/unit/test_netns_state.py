"""plugins/module_utils/netns_state: the rule lines the fingerprint compares and the ``ip rule``
arguments the netns reset deletes and re-adds them with (a namespace round trip: tests/lab/test_netns_lab.py)."""

from __future__ import annotations

import importlib
import sys

import pytest

from grayctl.paths import COLLECTIONS_DIR


@pytest.fixture(scope="module")
def ns():
    if str(COLLECTIONS_DIR) not in sys.path:
        sys.path.append(str(COLLECTIONS_DIR))
    return importlib.import_module("ansible_collections.grayctl.lab.plugins.module_utils.netns_state")


DEFAULTS = [{"priority": 0, "src": "all", "table": "local"}, {"priority": 32766, "src": "all", "table": "main"},
            {"priority": 32767, "src": "all", "table": "default"}]


def test_rule_lines_are_canonical_and_join_prefix_lengths(ns):
    rules = [{"priority": 100, "src": "10.227.9.0", "srclen": 24, "table": "100"}, *DEFAULTS]
    assert ns.rule_lines("inet", rules) == [
        "inet priority=0 src=all table=local", "inet priority=100 src=10.227.9.0/24 table=100",
        "inet priority=32766 src=all table=main", "inet priority=32767 src=all table=default"]
    assert ns.rule_lines("inet", list(reversed(rules))) == ns.rule_lines("inet", rules)


@pytest.mark.parametrize("rule,args", [
    ({"priority": 32766, "src": "all", "table": "main"}, ["pref", "32766", "lookup", "main"]),
    ({"priority": 100, "src": "10.227.9.0", "srclen": 24, "table": "100"},
     ["pref", "100", "from", "10.227.9.0/24", "lookup", "100"]),
    ({"priority": 99, "src": "all", "fwmark": "0x10", "fwmask": "0xff", "table": "200"},
     ["pref", "99", "fwmark", "0x10/0xff", "lookup", "200"]),
    ({"priority": 200, "src": "all", "dst": "2001:db8::", "dstlen": 32, "action": "unreachable"},
     ["unreachable", "pref", "200", "to", "2001:db8::/32"]),
    ({"priority": 5, "not": None, "src": "10.0.0.1", "iif": "data", "table": "main"},
     ["pref", "5", "not", "from", "10.0.0.1", "iif", "data", "lookup", "main"]),
])
def test_rule_args_name_the_rule_as_ip_rule_takes_it(ns, rule, args):
    assert ns._rule_args(rule) == args


def test_differences_ignore_keys_that_came_or_went_and_see_rules_both_ways(ns):
    golden = {"sysctls": {"net/core/somaxconn": "4096", "net/ipv4/conf/eth9/forwarding": "0"},
              "rules": {"inet": DEFAULTS, "inet6": []}}
    now = {"sysctls": {"net/core/somaxconn": "77", "net/ipv4/conf/data/forwarding": "1"},
           "rules": {"inet": [*DEFAULTS[:2], {"priority": 10, "src": "all", "table": "7"}], "inet6": []}}
    sysctls, rules = ns._differences(golden, now)
    assert sysctls == {"net/core/somaxconn": "4096"}
    assert rules == {"inet": ([{"priority": 10, "src": "all", "table": "7"}], [DEFAULTS[2]])}
