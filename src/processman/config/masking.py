"""Masking secrets wherever a config is shown: env values, probe URLs and probe commands, and free text
that quotes them (a last error, a log note).

A value is secret when its name says so (``API_KEY``, ``--password``), and a URL's password always is,
whatever the name (``DATABASE_URL=postgres://app:password@db/app``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

MASK = "****"
_SECRET_MARKERS = ("KEY", "SECRET", "PASSWORD", "TOKEN", "PASS", "CREDENTIAL", "PRIVATE", "AUTH")


def is_secret_name(name: str) -> bool:
    """True when a variable's (or an option's) name says its value is a secret."""
    upper = name.upper()
    return any(marker in upper for marker in _SECRET_MARKERS)


# The password of a URL: "scheme://user:password@host", up to the authority's last "@" (a password
# may hold one).
_URL_PASSWORD = re.compile(r"(://[^/@:\s]*):[^/\s]*@")
# NAME=value, in an argument, a query string or a sentence; quoted values whole.
_PAIR = re.compile(r"""(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)=(?P<value>"[^"]*"|'[^']*'|[^\s&;,"']+)""")
# An option and its value as separate words in a sentence: "--token abc".
_OPTION_WORD = re.compile(r"(?P<flag>(?<![\w-])--?[A-Za-z][A-Za-z0-9_-]*)(?P<space>\s+)(?P<value>[^\s-]\S*)")
# Options whose value is "user:password" though their name says nothing (curl -u, --user).
_USER_OPTIONS = ("-u", "--user", "--proxy-user")


def mask_url(text: str) -> str:
    return _URL_PASSWORD.sub(rf"\1:{MASK}@", text)


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    return {name: MASK if is_secret_name(name) else mask_url(value) for name, value in env.items()}


def _mask_pair(match: re.Match[str]) -> str:
    name = match.group("name")
    return f"{name}={MASK}" if is_secret_name(name) else match.group(0)


def _mask_option_word(match: re.Match[str]) -> str:
    flag = match.group("flag")
    if not is_secret_name(flag.lstrip("-")):
        return match.group(0)
    return f"{flag}{match.group('space')}{MASK}"


def mask_text(text: str) -> str:
    """Free text with URL passwords, ``SECRET_NAME=value`` pairs and ``--secret-option value`` masked.

    >>> mask_text("GET http://admin:hunter2@db/ failed; API_TOKEN=abc --password xyz")
    'GET http://admin:****@db/ failed; API_TOKEN=**** --password ****'
    """
    return _OPTION_WORD.sub(_mask_option_word, _PAIR.sub(_mask_pair, mask_url(text)))


def mask_command(command: Sequence[str]) -> list[str]:
    """A command's arguments with secrets masked: the value after a secret-looking option
    (``--password x``, ``-token x``, ``--api-key=x``), ``SECRET=value`` arguments, URL passwords, and
    the password of ``-u user:password``."""
    masked: list[str] = []
    previous = ""
    for argument in command:
        option = previous.startswith("-") and "=" not in previous
        if option and is_secret_name(previous.lstrip("-")):
            masked.append(MASK)
        elif option and previous in _USER_OPTIONS and ":" in argument:
            masked.append(argument.partition(":")[0] + ":" + MASK)
        else:
            masked.append(mask_text(argument))
        previous = argument
    return masked
