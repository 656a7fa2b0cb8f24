"""Fault helpers: programs that run on a lab node while a fault is active.

They run inside the node's network namespace with no controller in the loop, installed by the
fault roles (the ``node`` extra brings ``netfilterqueue``). The fallback backend for kernels
without ``sch_netem`` (docs/fault-backends.md) is built from them:

  ``delaymodel``  pure netem-compatible decisions: delay/jitter/correlation/distribution,
                  random loss, reorder with gap, and the order rule (flow/global/none)
  ``nfqdelay``    the delayer: an NFQUEUE bound to ``delaymodel``, packets held on a timer
                  heap, counters to a JSON stats file, reverts and flushes on any exit
                  (``python -m grayctl.faulthelpers.nfqdelay``)
  ``steer``       the netfilter rules a fault owns, named from its fault id: iptables chain
                  ``GRAYCTL_<id>`` steering into the queue; nft table ``inet grayctl_<id>``
                  for random loss and partitions; pure builders + apply/revert
  ``expiry``      the on-host guarantee: reverts the fault at a deadline or as soon as its
                  helper dies, even by SIGKILL (``python -m grayctl.faulthelpers.expiry``)
  ``probe``       UDP one-way delay/loss probes between two network namespaces, used by the
                  lab tests and ``bench/fault_fidelity.py`` to measure what a fault does
"""
