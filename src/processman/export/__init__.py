"""``processman export``: the same ``pb_processes.json`` for systemd, Docker Compose and Kubernetes.

    common.py      options, warnings, secrets kept out of generated files, writing the files
    systemd.py     units, timers and targets
    compose.py     a Compose file and the sidecars' Dockerfile
    kubernetes.py  StatefulSet, Service, Deployments, Jobs, CronJobs
    images.py      what runs inside a container, and the Dockerfiles
    cron.py        cron fields as systemd calendar events
    yamltext.py    the YAML writer

Every field of a process is either written for the target (``MAPPED``) or, when it is set, named in a
warning that says what the target lacks (``LACKS`` and warnings in the mapping code).
"""

from __future__ import annotations

from pathlib import Path

from processman.config import LoadedConfig
from processman.export.common import SECRETS_FILE, Export, ExportOptions, ExportWarning

TARGETS = ("systemd", "compose", "kubernetes")

__all__ = ["SECRETS_FILE", "TARGETS", "Export", "ExportOptions", "ExportWarning", "export_config"]


def export_config(target: str, loaded: LoadedConfig, options: ExportOptions, out: Path) -> Export:
    """The files of ``loaded`` for ``target`` (one of TARGETS), to be written to ``out``."""
    if target == "systemd":
        from processman.export.systemd import export_systemd

        return export_systemd(loaded, options)
    if target == "compose":
        from processman.export.compose import export_compose

        return export_compose(loaded, options, out)
    if target == "kubernetes":
        from processman.export.kubernetes import export_kubernetes

        return export_kubernetes(loaded, options, out)
    raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
