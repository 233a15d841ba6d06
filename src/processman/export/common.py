"""What every target shares: the options, the warnings, the entries of a config, the environment split
into plain values and secrets, and the files an export writes.

A secret is never written into a generated file: an ``env`` entry whose name processman masks (or whose
value quotes such a variable, or holds a URL password), and an argument processman masks, go to
``secrets.env`` instead, which the generated files refer to. Its values are filled from this
environment only with ``include_secrets``; otherwise it lists the names, empty, to be filled by hand.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from processman.config import PROCESS_FIELDS, LoadedConfig, ProcessConfig, is_secret_name, mask_url
from processman.config.masking import mask_command
from processman.environment import expand

SECRETS_FILE = "secrets.env"
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_NAME = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class ExportOptions:
    """How to export: ``name`` prefixes what is generated (units, workloads), ``image`` runs the sidecars
    in containers (None: built from a generated Dockerfile), ``systemd_version`` chooses the directives
    systemd has (None: assume a current one)."""

    name: str
    with_pocketbase: bool = False
    image: str | None = None
    include_secrets: bool = False
    systemd_version: int | None = None
    environ: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportWarning:
    """Something of the config that the target keeps differently or not at all."""

    process: str  # an entry's id, or "" for the whole config
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.process}: {self.field}" if self.process else self.field
        return f"{where}: {self.message}"


@dataclass
class Export:
    """The files of one export (name -> text), the secrets among them, the warnings and what to do
    next."""

    target: str
    files: dict[str, str] = field(default_factory=dict)
    private: set[str] = field(default_factory=set)  # written readable by the owner only
    warnings: list[ExportWarning] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)

    def warn(self, process: str, key: str, message: str) -> None:
        self.warnings.append(ExportWarning(process, key, message))

    def write(self, out: Path) -> list[Path]:
        """Write every file under ``out`` (made if missing); secrets readable by the owner only."""
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in self.files.items():
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            mode = 0o600 if name in self.private else 0o644
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            os.fchmod(descriptor, mode)  # an older file of that name may have had other bits
            with open(descriptor, "w", encoding="utf-8") as file:
                file.write(text)
            written.append(path)
        return written


def entries(loaded: LoadedConfig) -> list[ProcessConfig]:
    """One config per entry of the file: the loader expands ``instances`` into ``<id>:<n>``, an export
    writes the entry once and lets the target make the copies."""
    seen: dict[str, ProcessConfig] = {}
    for config in loaded.processes:
        seen.setdefault(config.entry, config)
    return list(seen.values())


def dns_name(*parts: str) -> str:
    """A name Kubernetes and Compose accept: lowercase letters, digits and '-'."""
    name = _NAME.sub("-", "-".join(parts).lower()).strip("-")
    return name[:63].rstrip("-") or "app"


def seconds(value: float) -> int:
    """Whole seconds, rounded up, at least 1: what the engines take."""
    return max(1, math.ceil(value))


def systemd_span(value: float) -> str:
    """``1.5s``, ``30s``, ``2min``: a time span systemd reads."""
    if value >= 60 and value % 60 == 0:
        return f"{int(value // 60)}min"
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def go_duration(value: float) -> str:
    """``1.5s``, ``1m30s``: the form Compose reads."""
    whole = int(value)
    minutes, rest = divmod(whole, 60)
    fraction = value - whole
    text = f"{rest + fraction:.3f}".rstrip("0").rstrip(".")
    return (f"{minutes}m" if minutes else "") + (f"{text}s" if text != "0" or not minutes else "")


@dataclass(frozen=True)
class Environment:
    """A process's environment as a target writes it: ``plain`` values in the generated file, ``secret``
    names (in ``secrets.env``)."""

    plain: dict[str, str]
    secret: list[str]


def _references(value: str) -> list[str]:
    return [match.group(1) or match.group(2) for match in _REFERENCE.finditer(value.replace("$$", ""))]


def is_secret_entry(name: str, value: str) -> bool:
    """An env entry whose value must not be written: its name, a variable it quotes, or a URL password."""
    quoted = any(is_secret_name(reference) for reference in _references(value))
    return is_secret_name(name) or quoted or mask_url(value) != value


def split_environment(
    config: ProcessConfig, export: Export, environ: Mapping[str, str], *, expand_now: bool
) -> Environment:
    """The env of ``config`` split into plain values and secret names. With ``expand_now`` (systemd,
    Kubernetes: neither expands ``${VAR}`` from a deploy-time environment) values are expanded from
    ``environ`` now, with a warning that says so."""
    plain: dict[str, str] = {}
    secret: list[str] = []
    for name, value in config.env.items():
        if is_secret_entry(name, value) or is_secret_entry(name, expand(value, environ)):
            secret.append(name)
            continue
        references = _references(value)
        if expand_now and (references or "$$" in value):
            if references:
                export.warn(config.entry, f"env.{name}", _expanded_now(references, environ, export.target))
            value = expand(value, environ)
        plain[name] = value
    return Environment(plain, secret)


_NO_EXPANSION = {
    "systemd": "systemd does not expand variables in Environment=",
    "kubernetes": "Kubernetes expands only $(VAR) of the container's own env",
}


def _expanded_now(references: list[str], environ: Mapping[str, str], target: str) -> str:
    """What became of each variable an env value quotes, expanded from this environment now."""
    unset = [f"${{{ref}}}" for ref in dict.fromkeys(references) if ref not in environ]
    found = [f"${{{ref}}} as {environ[ref]!r}" for ref in dict.fromkeys(references) if ref in environ]
    why = _NO_EXPANSION.get(target, f"{target} does not expand it from the service's environment")
    said = []
    if unset:
        verb = "is" if len(unset) == 1 else "are"
        said.append(f"{', '.join(unset)} {verb} unset on this machine: written as empty")
    if found:
        said.append(f"written with {', '.join(found)} from this machine")
    return f"{'; '.join(said)} ({why}): check the value on the target"


@dataclass(frozen=True)
class Argv:
    """A command line with its secret arguments taken out: ``words`` has None where ``secrets`` names
    the variable (in ``secrets.env``) that holds the argument."""

    words: list[str | None]
    secrets: list[str]


def split_argv(config: ProcessConfig, argv: list[str]) -> Argv:
    """Arguments processman masks (``--password x``, ``TOKEN=x``, a URL password) become variables
    ``<ENTRY>_SECRET_ARG_<n>``."""
    masked = mask_command(argv)
    words: list[str | None] = []
    secrets: list[str] = []
    prefix = re.sub(r"[^A-Z0-9]+", "_", config.entry.upper()).strip("_")
    for index, (word, shown) in enumerate(zip(argv, masked, strict=True)):
        if word == shown:
            words.append(word)
        else:
            words.append(None)
            secrets.append(f"{prefix}_SECRET_ARG_{index}")
    return Argv(words, secrets)


def secret_value(config: ProcessConfig, name: str, argv: list[str], environ: Mapping[str, str]) -> str:
    """The value a secret of ``config`` has now: an env entry expanded, or an argument."""
    if name in config.env:
        return expand(config.env[name], environ)
    index = int(name.rpartition("_")[2])
    return argv[index]


def secrets_file(
    export: Export,
    secrets: Iterable[tuple[ProcessConfig, list[str], list[str]]],
    options: ExportOptions,
    how: str,
    *,
    quoted: bool = True,
) -> None:
    """``secrets.env``: every secret name, with its value from this environment with
    ``include_secrets``, else empty with what to do. ``secrets`` holds (config, names, argv). Without
    ``quoted`` values are written as they are (``kubectl --from-env-file`` keeps quotes)."""
    lines = [
        "# Secrets of the processes, kept out of the generated files, which refer to this file.",
        f"# {how}",
    ]
    names: dict[str, str] = {}
    for config, secret_names, argv in secrets:
        for name in secret_names:
            value = secret_value(config, name, argv, options.environ) if options.include_secrets else ""
            if name in names and names[name] != value:
                export.warn(
                    config.entry, f"env.{name}", "another process gives it another value: one file holds one"
                )
            names.setdefault(name, value)
    if not names:
        return
    if not options.include_secrets:
        lines.append("# Fill in each value (or export again with --include-secrets to copy them from the")
        lines.append("# environment export runs in). Keep this file readable by its owner only.")
    for name, value in names.items():
        if not options.include_secrets:
            lines.append(f"{name}=")
        elif quoted:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            lines.append(f'{name}="{escaped}"')
        else:
            lines.append(f"{name}={value}")
    export.files[SECRETS_FILE] = "\n".join(lines) + "\n"
    export.private.add(SECRETS_FILE)


def warn_lacking(config: ProcessConfig, export: Export, lacks: Mapping[str, str]) -> None:
    """A warning for each field set (to other than its default) that the target lacks."""
    for spec in PROCESS_FIELDS:
        if spec.key not in lacks:
            continue
        value = getattr(config, spec.attr)
        default = spec.default
        if spec.key == "watchPaths" and not config.dev_mode:
            default = ()
        if (
            value is None
            or value == default
            or (isinstance(value, tuple | dict) and not value and not default)
        ):
            continue
        export.warn(config.entry, spec.key, lacks[spec.key])


def max_retries_default(config: ProcessConfig) -> bool:
    return config.retries == (0 if config.is_job else -1)
