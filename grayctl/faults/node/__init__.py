"""The node half of faults: the executor and the helpers that run on a lab node while a fault is active.

They run inside the node's network namespace with no controller in the loop (the ``node`` extra
brings ``netfilterqueue``), and import only grayctl.faults.* and grayctl.units: never the
controller's plan or run. The fallback backend for kernels without ``sch_netem``
(docs/fault-backends.md) is built from the helpers:

  ``faultctl``    the executor the fault role calls: apply / revert / list / purge / probe / watch
                  (``python -m grayctl.faults.node.faultctl``), one record per fault
  ``procs``       a fault's processes: found by /proc, tracked by pidfd, stopped and verified gone;
                  the replicas topology_deploy records (process faults)
  ``delaymodel``  pure netem-compatible decisions: delay/jitter/correlation/distribution,
                  random loss, reorder with gap, and the order rule (flow/global/none)
  ``nfqdelay``    the delayer: an NFQUEUE bound to ``delaymodel``, packets held on a timer
                  heap, counters to a JSON stats file, reverts and flushes on any exit
                  (``python -m grayctl.faults.node.nfqdelay``)
  ``steer``       the netfilter rules a fault owns, named from its fault id: iptables chain
                  ``GRAYCTL_<id>`` steering into the queue; nft table ``inet grayctl_<id>``
                  for random loss and partitions; pure builders + apply/revert
  ``stutter``     SIGSTOP/SIGCONT of process groups: one pause or a periodic stutter
  ``expiry``      the on-host guarantee: reverts the fault at a deadline or as soon as its
                  helper dies, even by SIGKILL (``python -m grayctl.faults.node.expiry``)
  ``probe``       UDP one-way delay/loss probes between two network namespaces, used by the
                  lab tests and ``bench/fault_fidelity.py`` to measure what a fault does
  ``args``        the helpers' option types (durations and percentages, through grayctl.units)
"""
