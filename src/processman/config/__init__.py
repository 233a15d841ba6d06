"""Process configuration: the value objects, the field tables they follow, the loader of
``pb_processes.json``, its JSON Schema, and the reported (masked) form.

    fields.py   the kinds of value (duration, size, ...): reading, checking, schema, shown form
    model.py    Probe and ProcessConfig, their field tables, config_to_json
    loader.py   load_config: a file to configs and problems, never an exception
    schema.py   json_schema, from the same tables
    masking.py  secrets in env values, probe URLs and commands, and free text
    notify.py   notification targets (``notify``), top level and per process
    schedule.py a job's ``schedule`` (cron or interval, time zone, overlap, catch-up)
"""

from __future__ import annotations

from processman.config.fields import (
    DEPENDENCY_CONDITIONS,
    DURATION_EXPECTED,
    GROUP_PREFIX,
    ID_MAX_LENGTH,
    ID_PATTERN,
    LIMIT_NAMES,
    RESTART_POLICIES,
    SIZE_EXPECTED,
    Field,
)
from processman.config.loader import (
    CONFIG_FILENAME,
    MAX_CONFIG_BYTES,
    ConfigProblem,
    LoadedConfig,
    configs_from_dicts,
    expand_instances,
    find_cycles,
    load_config,
    parse_processes,
)
from processman.config.masking import MASK, is_secret_name, mask_command, mask_env, mask_text, mask_url
from processman.config.model import (
    FIELDS,
    LOG_BACKUPS,
    LOG_MAX_SIZE,
    MAX_INSTANCES,
    MAX_LOG_BACKUPS,
    PROBE_FIELDS,
    PROCESS_FIELDS,
    WATCH_DEBOUNCE,
    Probe,
    ProcessConfig,
    config_to_json,
    probe_to_json,
    shown_field,
)
from processman.config.notify import NOTIFY_EVENTS, NotifyTarget, notify_to_json
from processman.config.schedule import OVERLAP_POLICIES, Schedule, schedule_to_json
from processman.config.schema import json_schema

__all__ = [
    "CONFIG_FILENAME",
    "DEPENDENCY_CONDITIONS",
    "DURATION_EXPECTED",
    "FIELDS",
    "GROUP_PREFIX",
    "ID_MAX_LENGTH",
    "ID_PATTERN",
    "LIMIT_NAMES",
    "LOG_BACKUPS",
    "LOG_MAX_SIZE",
    "MASK",
    "MAX_CONFIG_BYTES",
    "MAX_INSTANCES",
    "MAX_LOG_BACKUPS",
    "NOTIFY_EVENTS",
    "OVERLAP_POLICIES",
    "PROBE_FIELDS",
    "PROCESS_FIELDS",
    "RESTART_POLICIES",
    "SIZE_EXPECTED",
    "WATCH_DEBOUNCE",
    "ConfigProblem",
    "Field",
    "LoadedConfig",
    "NotifyTarget",
    "Probe",
    "ProcessConfig",
    "Schedule",
    "config_to_json",
    "configs_from_dicts",
    "expand_instances",
    "find_cycles",
    "is_secret_name",
    "json_schema",
    "load_config",
    "mask_command",
    "mask_env",
    "mask_text",
    "mask_url",
    "notify_to_json",
    "parse_processes",
    "probe_to_json",
    "schedule_to_json",
    "shown_field",
]
