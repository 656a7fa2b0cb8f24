# -*- coding: utf-8 -*-
"""The options every lab provider module shares (module_utils/labdef.py PROVIDER_OPTIONS), documented once."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  definition:
    description: The lab definition, as the mapping found in a C(lab.yml).
    type: dict
    required: true
  nodes:
    description: Node count override; C(0) uses the definition's C(nodes.count).
    type: int
    default: 0
  home:
    description: The lab directory; empty uses the definition's C(home), then C($GRAYCTL_LAB_HOME/<name>),
      then C(/var/lib/grayctl/labs/<name>).
    type: str
    default: ""
"""
