"""grayctl — a lab for gray-failure research.

Map of the package (one module per domain concept):
  errors      the exception root and exit codes
  units       durations, sizes, rates and percentages with units
  source      safe YAML loading that keeps line/column positions
  experiment  the experiment file: models, defaults, validation
  topology    the topology file: logical app, decomposition, placement
  lab/        the lab definition and its providers (netns, qemu, physical) behind one seam
  plan        experiment + topology + lab -> ordered steps (pure data)
  runner      playbooks through ansible-runner, as events
  cli/        one module per command or command group
"""

from typing import Any


def __getattr__(name: str) -> Any:
    """``__version__`` on first use: importlib.metadata costs ~40 ms, and every process a run starts on
    the nodes (replicas, exporters, fault helpers, the load generator) imports this package."""
    if name != "__version__":
        raise AttributeError(f"module 'grayctl' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("grayctl")
    except PackageNotFoundError:  # running from a source tree without install
        value = "0.0.0+src"
    globals()["__version__"] = value
    return value
