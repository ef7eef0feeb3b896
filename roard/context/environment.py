"""A process's environment and command line as recorded: read at exec, secrets redacted.

Lineage must say how a run was invoked without leaking what it was invoked with: values of
variables whose names look like secrets (tokens, passwords, keys), values that look like
credentials whatever their name (cloud keys, bearer tokens, private keys), and passwords in
URLs are replaced before anything is spooled. An environment is identified by the hash of
its redacted content, so a run of thousands of processes stores each distinct one once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import blake3

REDACTED = "<redacted>"

# Variable or option names whose value is a secret (searched anywhere in the name).
DEFAULT_SECRET_NAMES = (
    # ("auth" but not GIT_AUTHOR_NAME; "_pwd" but not PWD, the working directory)
    r"(?i)pass(wd|word|phrase)?|secret|token|api[_-]?key|private[_-]?key|access[_-]?key"
    r"|credential|auth(?!or_|or$)|cookie|signature|_pwd$",
)
# Values that are credentials whatever they are called.
DEFAULT_SECRET_VALUES = (
    r"gh[pousr]_[A-Za-z0-9]{20,}",  # GitHub tokens
    r"xox[abprs]-[A-Za-z0-9-]{10,}",  # Slack tokens
    r"AKIA[0-9A-Z]{16}",  # AWS access key ids
    r"sk-[A-Za-z0-9_-]{20,}",  # OpenAI-style API keys
    r"hf_[A-Za-z0-9]{20,}",  # Hugging Face tokens
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.",  # JWTs
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
)
# scheme://user:password@host: the password goes, the rest stays useful.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+(?=@)")
_OPTION = re.compile(r"(?P<name>--?[A-Za-z0-9][A-Za-z0-9_.-]*)=(?P<value>.*)", re.S)
_ASSIGNMENT = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)", re.S)


@dataclass(frozen=True)
class Redactor:
    """Removes secrets from environments and argv (patterns: `[context]` in the config)."""

    secret_names: tuple[str, ...] = DEFAULT_SECRET_NAMES
    secret_values: tuple[str, ...] = DEFAULT_SECRET_VALUES
    _names: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _values: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Compiled once; a bad pattern raises re.error, which config turns into ConfigError.
        object.__setattr__(self, "_names", re.compile("|".join(self.secret_names) or "(?!)"))
        object.__setattr__(self, "_values", re.compile("|".join(self.secret_values) or "(?!)"))

    def value(self, name: str, value: str) -> str:
        """`value` as recorded for a variable or option called `name`."""
        if value and (self._names.search(name) or self._values.search(value)):
            return REDACTED
        return _URL_PASSWORD.sub(rf"\g<head>{REDACTED}", value)

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """The environment with every secret value replaced by REDACTED."""
        return {name: self.value(name, value) for name, value in sorted(env.items())}

    def argv(self, argv: Sequence[str]) -> tuple[str, ...]:
        """argv with secrets replaced: `--token=X`, `--token X`, `TOKEN=X` (as env(1)
        takes them), credential-looking words and URL passwords."""
        out: list[str] = []
        secret_next = False
        for arg in argv:
            if secret_next and not arg.startswith("-"):
                out.append(REDACTED)
                secret_next = False
                continue
            secret_next = False
            match = _OPTION.fullmatch(arg) or _ASSIGNMENT.fullmatch(arg)
            if match is not None:
                out.append(f"{match['name']}={self.value(match['name'], match['value'])}")
            elif arg.startswith("-") and self._names.search(arg.lstrip("-")):
                out.append(arg)
                secret_next = True
            else:
                out.append(self.value("", arg))
        return tuple(out)


def read_environ_block(pid: int) -> bytes | None:
    """The environment block process `pid` started with, raw (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:
        return None


def parse_environ(block: bytes) -> dict[str, str]:
    """An environment block (NUL-terminated NAME=value entries) as variables. Bytes that are
    not UTF-8 are kept as surrogate escapes."""
    env: dict[str, str] = {}
    for entry in block.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name:
            env[name.decode(errors="surrogateescape")] = value.decode(errors="surrogateescape")
    return env


def read_environ(pid: int) -> dict[str, str] | None:
    """The environment process `pid` started with (None once it is gone, or for a
    kernel thread)."""
    block = read_environ_block(pid)
    return None if block is None else parse_environ(block)


def digest(env: Mapping[str, str], truncated: bool = False) -> str:
    """The identity of a (redacted) environment: the same content, the same hash. Only the
    start of an environment (`truncated`) never has the hash of a whole one."""
    h = blake3.blake3()
    for name, value in sorted(env.items()):
        h.update(f"{name}={value}".encode(errors="surrogateescape") + b"\0")
    if truncated:
        h.update(b"\0")  # an empty entry: no whole environment's content ends so
    return "blake3:" + h.hexdigest()


@dataclass(frozen=True)
class Recorded:
    """One environment as roard keeps it."""

    variables: dict[str, str]  # as the program got them: read only for tracker ids
    redacted: dict[str, str]
    digest: str  # digest(redacted, truncated): only the start of a truncated one is known


class Environments:
    """Parses, redacts and digests environment blocks, remembering the last `size` blocks:
    the processes of a job mostly start with the same few, and redaction runs every secret
    pattern over every value. Callers must not change what it returns."""

    def __init__(self, redactor: Redactor, size: int = 64) -> None:
        self._redactor = redactor
        self._size = size
        self._seen: dict[tuple[bytes, bool], Recorded] = {}

    def of(self, block: bytes, truncated: bool = False) -> Recorded:
        """The environment in `block` (NUL-terminated NAME=value entries)."""
        key = (block, truncated)
        found = self._seen.get(key)
        if found is None:
            variables = parse_environ(block)
            redacted = self._redactor.environment(variables)
            found = Recorded(variables, redacted, digest(redacted, truncated))
            if len(self._seen) >= self._size:
                self._seen.clear()
            self._seen[key] = found
        return found
