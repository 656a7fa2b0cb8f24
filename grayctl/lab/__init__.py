"""The lab: which nodes there are, and the providers that make, reset and remove them.

  definition.py  the lab definition (lab.yml): load_lab, validate_lab, LabDefinition; an Ansible
                 inventory given as --lab loads as a PhysicalLab instead
  node.py        LabNode, one node whatever made it
  provider.py    the Provider seam (up, down, reset, status, doctor, capabilities, reimage step)
                 and provider_for(lab)
  netns.py       provider: network namespaces on this machine (roles/netns_lab)
  qemu.py        provider: VM nodes of a netns lab (roles/qemu_lab); image.py, their golden images
  physical.py    provider: machines in an Ansible inventory, reimaged by their backends (roles/reimage_*)
  lifecycle.py   run_lab_up/status/reset/down/doctor/bootstrap: what the CLI and the run call
  records.py     LabRecord, DoctorReport, ensure_root;  baseline.py  golden baseline record/verify
"""
