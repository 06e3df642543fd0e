"""Typed, frozen settings from ``config.toml`` and ``MAILFLOW_<SECTION>_<KEY>``.

The file is read with tomllib and validated by pydantic models that forbid
unknown keys and coercion, so a typo or a wrong type stops the program with
a ConfigError naming the file, the key and what is allowed. Relative paths
are resolved against the config file's folder, once, here: nothing else in
mailflow ever sees a relative path.

This module never opens a database, a socket or a mailbox; the one thing
it writes is the folders of ``prepare_paths``, which ``build`` calls first.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from mailflow.cron import parse_cron
from mailflow.economies import builtin_economies
from mailflow.errors import ConfigError
from mailflow.languages import SHIPPED, shipped_tag

CONFIG_ENV = "MAILFLOW_CONFIG"
ENV_PREFIX = "MAILFLOW_"

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_EMAIL = re.compile(r"^[^@\s<>]+@[A-Za-z0-9.-]+$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$")
# A '+' inside is for a shared mailbox: `mailflow+submit` (SPEC section 2).
_LOCAL_PART = re.compile(r"^[A-Za-z0-9._-]+(\+[A-Za-z0-9._-]+)?$")


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("must be an email address like name@example.org")
    return value.lower()


def _domain(value: str) -> str:
    if not _DOMAIN.match(value):
        raise ValueError("must be a domain name like mail.example.org")
    return value.lower()


def _local_part(value: str) -> str:
    if not _LOCAL_PART.match(value):
        raise ValueError(
            "must be a local part of letters, digits, '.', '_' or '-', "
            "with at most one '+' inside (mailflow+submit)"
        )
    return value.lower()


def _language(value: str) -> str:
    tag = shipped_tag(value)
    if tag is None:
        raise ValueError(f"must be one of the shipped languages: {', '.join(SHIPPED)}")
    return tag


def _cron(value: str) -> str:
    parse_cron(value)
    return value


Email = Annotated[str, AfterValidator(_email)]
Domain = Annotated[str, AfterValidator(_domain)]
LocalPart = Annotated[str, AfterValidator(_local_part)]
Cron = Annotated[str, AfterValidator(_cron)]
Language = Annotated[str, AfterValidator(_language)]  # a shipped BCP 47 tag
Port = Annotated[int, Field(ge=1, le=65535)]
Days = Annotated[int, Field(ge=1, le=3650)]
# Paths are written as TOML strings; strict mode would want Path objects.
ConfigPath = Annotated[Path, Field(strict=False)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


class SiteSettings(Section):
    name: str = "APEC MSE Best Practices"
    domain: Domain = "mailflow.localhost"
    base_url: Annotated[str, Field(pattern=r"^https?://")] = "http://127.0.0.1:8080"
    language: Language = "en"  # for people with no other (SPEC section 3a)


class DatabaseSettings(Section):
    url: Annotated[str, Field(pattern=r"^(sqlite|postgresql)(\+\w+)?://")] = (
        "sqlite:///var/mailflow.db"
    )


class SmtpSettings(Section):
    host: str = "127.0.0.1"
    port: Port = 8025
    lmtp: bool = False
    # mailflow additions: beyond these, a new connection hears 421 and closes.
    max_connections: Annotated[int, Field(ge=1)] = 500
    max_connections_per_client: Annotated[int, Field(ge=1)] = 50


class ImapSettings(Section):
    host: str
    port: Port = 993
    ssl: bool = True
    starttls: bool = False
    username: str
    password_env: str = "MAILFLOW_IMAP_PASSWORD"
    folder: str = "INBOX"
    processed_folder: str = "mailflow/processed"

    @model_validator(mode="after")
    def _password_never_in_clear(self) -> ImapSettings:
        if self.ssl and self.starttls:
            raise ValueError("set ssl = true (port 993) or starttls = true (port 143), not both")
        if not (self.ssl or self.starttls) and self.host not in _LOOPBACK:
            raise ValueError(
                f"ssl = false and starttls = false would send the password to {self.host} "
                "in clear; that is allowed only for 127.0.0.1 or localhost"
            )
        return self


class SpoolSettings(Section):
    dir: ConfigPath = Path("var/spool")
    workers: Annotated[int, Field(ge=1, le=64)] = 2
    # > 0: this many worker processes instead of the threads (PostgreSQL).
    processes: Annotated[int, Field(ge=0, le=64)] = 0
    # A worker process idle this long after work makes way for a fresh one,
    # giving back the memory its work left behind (Postfix's max_idle).
    process_idle_seconds: Annotated[float, Field(ge=1, le=86_400)] = 30
    max_tries: Annotated[int, Field(ge=1, le=100)] = 5


class FilesSettings(Section):
    # Raw messages and documents, named by their SHA-256 (store/files.py);
    # several hosts mount one folder here.
    dir: ConfigPath = Path("var/files")


class OutboundSettings(Section):
    transport: Literal["maildir", "smtp"] = "maildir"
    maildir: ConfigPath = Path("var/outbox")
    host: str = "127.0.0.1"
    port: Port = 25
    starttls: bool = False
    username: str = ""
    password_env: str = "MAILFLOW_SMTP_PASSWORD"
    # Replies to it must reach a person: help@ forwards questions (SPEC 2).
    from_: Annotated[str, Field(alias="from")] = "APEC MSE Best Practices <help@mailflow.localhost>"
    # Deliverability (SPEC 8): larger documents are linked from review
    # emails, not attached; with a selector every email is DKIM-signed.
    max_attachment_bytes: Annotated[int, Field(ge=1)] = 10_485_760
    dkim_selector: Annotated[str, Field(pattern=r"^([A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*)?$")] = ""
    dkim_key_file: ConfigPath = Path("var/dkim.key")


class ArchiveSettings(Section):
    output_dir: ConfigPath = Path("var/archive")
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8080
    http_host: str = "127.0.0.1"  # put nginx in front for the public (deploy/)


class AdminSettings(Section):
    addresses: Annotated[list[Email], Field(min_length=1)] = ["admin@mailflow.localhost"]
    language: Language = "en"  # administrators, editors and overseers


class AddressSettings(Section):
    submit: LocalPart = "submit"
    register_: Annotated[LocalPart, Field(alias="register")] = "register"
    subscribe: LocalPart = "subscribe"
    unsubscribe: LocalPart = "unsubscribe"
    internship: LocalPart = "internship"
    comment: LocalPart = "comment"
    help: LocalPart = "help"
    actions: LocalPart = "actions"
    bounces: LocalPart = "bounces"
    status: LocalPart = "status"
    focal_points: LocalPart = "focal-points"
    postmaster: LocalPart = "postmaster"
    abuse: LocalPart = "abuse"


class EconomySettings(Section):
    name: str | None = None
    aliases: list[str] | None = None
    focal_points: list[Email] | None = None
    travel_eligible: bool | None = None
    language: Language | None = None


class WorkflowSettings(Section):
    confirm_days: Days = 14
    token_days: Days = 30
    reminder_days: Days = 7
    max_reminders: Annotated[int, Field(ge=0, le=50)] = 3
    escalate_days: Days = 21
    no_focal_point: Literal["admin", "hold"] = "admin"
    # False: the administrators never endorse in a focal point's place, neither
    # for an economy without one (its cases wait, as with "hold") nor after
    # the escalation (they are told, without the Endorse link).
    admin_endorses: bool = True
    daily_summary: Cron = "0 8 * * *"
    away_days: Days = 7  # an out-of-office reply that names no date
    stages: list[Literal["admin", "editor", "focal_point"]] = ["admin", "focal_point"]

    @model_validator(mode="after")
    def _stages_in_order(self) -> WorkflowSettings:
        if self.stages not in (["admin", "focal_point"], ["admin", "editor", "focal_point"]):
            raise ValueError(
                'stages must be ["admin", "focal_point"] or ["admin", "editor", "focal_point"]'
                " (the language editor stands between the administrator and the focal point)"
            )
        return self


class EditorSettings(Section):
    addresses: list[Email] = []


class SecuritySettings(Section):
    token_key_file: ConfigPath = Path("var/token.key")
    token_only: bool = False
    authserv_id: str = ""


class LimitSettings(Section):
    max_message_bytes: Annotated[int, Field(ge=1024)] = 26_214_400
    max_attachment_bytes: Annotated[int, Field(ge=1024)] = 20_971_520


class DigestSettings(Section):
    schedule: Cron = "0 8 * * MON"
    # Subscribers per transaction of the fan-out: what a crash can cost is
    # one batch written again, never a digest sent twice.
    batch: Annotated[int, Field(ge=1, le=100_000)] = 500


class InternshipSettings(Section):
    funded_cap: Annotated[int, Field(ge=0)] = 20
    contact_days: Days = 14  # an accepted applicant not contacted by then writes to us


class CommentSettings(Section):
    moderation: bool = True


class ReportSettings(Section):
    recipients: list[Email] = []  # overseers; the administrators always get it
    schedule: Cron = "0 6 1 * *"  # monthly, for the month before


class MonitorSettings(Section):
    http_host: str = "127.0.0.1"  # /healthz and /metrics: for the host's own scraper
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8081  # 0 = do not serve


class HostSettings(Section):
    # Several hosts on one PostgreSQL (SPEC section 8): this host's name in
    # `mailflow status` ("" = hostname:pid), and how long the scheduler and
    # the site writer stay with a host that stopped renewing them.
    name: Annotated[str, Field(max_length=200)] = ""
    lease_seconds: Annotated[int, Field(ge=3, le=600)] = 15


class LogSettings(Section):
    format: Literal["text", "json"] = "text"  # "json": one object per line, for log collectors


class Settings(Section):
    """Everything mailflow reads from its configuration."""

    site: SiteSettings = SiteSettings()
    database: DatabaseSettings = DatabaseSettings()
    smtp: SmtpSettings = SmtpSettings()
    imap: ImapSettings | None = None
    spool: SpoolSettings = SpoolSettings()
    files: FilesSettings = FilesSettings()
    outbound: OutboundSettings = OutboundSettings()
    archive: ArchiveSettings = ArchiveSettings()
    admin: AdminSettings = AdminSettings()
    addresses: AddressSettings = AddressSettings()
    economies: dict[str, EconomySettings] = {}
    workflow: WorkflowSettings = WorkflowSettings()
    editors: EditorSettings = EditorSettings()
    security: SecuritySettings = SecuritySettings()
    limits: LimitSettings = LimitSettings()
    digest: DigestSettings = DigestSettings()
    internships: InternshipSettings = InternshipSettings()
    report: ReportSettings = ReportSettings()
    comments: CommentSettings = CommentSettings()
    monitor: MonitorSettings = MonitorSettings()
    hosts: HostSettings = HostSettings()
    log: LogSettings = LogSettings()

    source: Path = Path("config.toml")

    def economy_overrides(self) -> dict[str, dict[str, Any]]:
        return {
            code: {k: tuple(v) if isinstance(v, list) else v for k, v in e if v is not None}
            for code, e in self.economies.items()
        }


_PATH_KEYS = (
    ("spool", "dir"),
    ("files", "dir"),
    ("outbound", "maildir"),
    ("outbound", "dkim_key_file"),
    ("archive", "output_dir"),
    ("security", "token_key_file"),
)


def config_path(explicit: str | None) -> Path:
    """--config wins, then $MAILFLOW_CONFIG, then ./config.toml."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or "config.toml")


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, override from the environment, validate and resolve paths."""
    environ = os.environ if environ is None else environ
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path}: no such config file; pass --config PATH or set {CONFIG_ENV}"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    from_environment = _apply_environment(raw, environ, path)
    _check_economy_codes(raw, path)
    try:
        settings = Settings.model_validate({**raw, "source": path.resolve()})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, from_environment)) from exc
    if "editor" in settings.workflow.stages and not settings.editors.addresses:
        raise ConfigError(
            f'{path}: [workflow] stages names "editor": list the language editors '
            "in [editors] addresses"
        )
    return _resolve_paths(settings, path.resolve().parent)


def _apply_environment(
    raw: dict[str, Any], environ: Mapping[str, str], path: Path
) -> dict[str, str]:
    """MAILFLOW_<SECTION>_<KEY>=value overrides [section].key. A variable for
    a known section but an unknown key is an error, so a typo is not ignored.
    The variables that *_env keys name (passwords) are not overrides.
    Returns "[section] key" -> variable, to name the variable in errors."""
    applied: dict[str, str] = {}
    secret_names = {CONFIG_ENV, "MAILFLOW_IMAP_PASSWORD", "MAILFLOW_SMTP_PASSWORD"}
    for section in ("imap", "outbound"):
        secret_names.add(str(raw.get(section, {}).get("password_env", "")))
    sections = {name for name in Settings.model_fields if name != "source"}
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable in secret_names:
            continue
        section, _, key = variable[len(ENV_PREFIX) :].lower().partition("_")
        if section not in sections:
            continue
        target = raw.setdefault(section, {})
        if section == "economies":
            code, _, key = key.partition("_")
            target = target.setdefault(code.upper(), {})
            model: type[BaseModel] = EconomySettings
        else:
            model = _section_model(section)
        allowed = {f.alias or name for name, f in model.model_fields.items()}
        if key not in allowed:
            raise ConfigError(
                f"{variable}: [{section}] has no key {key!r} (overriding {path}); "
                f"allowed keys: {', '.join(sorted(allowed))}"
            )
        target[key] = _env_value(environ[variable], model, key)
        table = f"economies.{code.upper()}" if section == "economies" else section
        applied[f"[{table}] {key}"] = variable
    return applied


def _section_model(section: str) -> type[BaseModel]:
    annotation = Settings.model_fields[section].annotation
    if section == "imap":
        return ImapSettings
    assert isinstance(annotation, type)
    return annotation


def _env_value(text: str, model: type[BaseModel], key: str) -> Any:
    """Read a variable as its key expects: lists as TOML arrays or
    comma-separated, numbers and booleans as TOML values, the rest as text."""
    field = next(f for name, f in model.model_fields.items() if key in (name, f.alias))
    shape = str(field.annotation)
    if "list" in shape:
        parsed = _toml_value(text)
        if isinstance(parsed, list):
            return parsed
        return [item.strip() for item in text.split(",") if item.strip()]
    if "int" in shape or "bool" in shape:
        return _toml_value(text)
    return text


def _toml_value(text: str) -> Any:
    """The value TOML reads from text, or the text itself (pydantic then
    reports the wrong type against the key's name)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _check_economy_codes(raw: dict[str, Any], path: Path) -> None:
    known = builtin_economies()
    for code in raw.get("economies", {}):
        if code not in known:
            raise ConfigError(
                f"{path}: [economies.{code}] is not an APEC economy code; "
                f"allowed: {', '.join(sorted(known))}"
            )


def _describe(error: ValidationError, path: Path, from_environment: dict[str, str]) -> str:
    lines = []
    for problem in error.errors():
        location = [str(part) for part in problem["loc"]]
        where, key = _where(location)
        if problem["type"] == "extra_forbidden":
            noun = "key" if key else "section"
            allowed = _allowed_keys(location[:-1])
            message = f"unknown {noun}; allowed {noun}s: {', '.join(allowed)}"
        elif problem["type"] == "missing":
            message = "is required"
        else:
            message = problem["msg"].removeprefix("Value error, ")
            message += f" (got {problem['input']!r})"
        source = (
            f"{from_environment[where]} (overriding {path})" if where in from_environment else path
        )
        lines.append(f"{source}: {where}: {message}")
    return "\n".join(lines)


def _where(location: list[str]) -> tuple[str, str]:
    """("[section] key (item N)", key) for a pydantic error location."""
    width = 2 if location[0] == "economies" and len(location) > 1 else 1
    section, rest = ".".join(location[:width]), location[width:]
    if not rest:
        return f"[{section}]", ""
    items = "".join(f" (item {int(p) + 1})" for p in rest[1:] if p.isdigit())
    return f"[{section}] {rest[0]}{items}", rest[0]


def _allowed_keys(location: list[str]) -> list[str]:
    if not location:
        return sorted(n for n in Settings.model_fields if n != "source")
    if location[0] == "economies":
        return sorted(EconomySettings.model_fields)
    model = _section_model(location[0])
    return sorted(f.alias or name for name, f in model.model_fields.items())


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    changes: dict[str, Any] = {}
    for section, key in _PATH_KEYS:
        current = changes.get(section, getattr(settings, section))
        value = getattr(current, key)
        if not value.is_absolute():
            changes[section] = current.model_copy(update={key: base / value})
    url = settings.database.url
    if url.startswith("sqlite") and ":///" in url and not url.endswith(":memory:"):
        prefix, _, file = url.partition(":///")
        if file and not file.startswith("/"):
            changes["database"] = DatabaseSettings(url=f"{prefix}:///{base / file}")
    return settings.model_copy(update=changes)


# -- paths that must be usable -----------------------------------------------------


def prepare_paths(settings: Settings) -> None:
    """Create the folders mailflow writes into, or stop with one line naming
    the file and the key: a relative ``var/...`` resolved under ``/etc``, a
    folder this user may not write, a parent that is a file. Called before
    anything is opened, so no command dies with a traceback on a path."""
    for key, folder in _writable_folders(settings):
        problem = _unusable(folder)
        if problem:
            raise ConfigError(f"{settings.source}: {key}: {problem}")


def _writable_folders(settings: Settings) -> list[tuple[str, Path]]:
    """("[section] key", folder it writes into), in the order they are opened."""
    folders = []
    url = settings.database.url
    if url.startswith("sqlite") and ":///" in url and not url.endswith(":memory:"):
        folders.append(("[database] url", Path(url.partition(":///")[2]).parent))
    folders.append(("[spool] dir", settings.spool.dir))
    folders.append(("[files] dir", settings.files.dir))
    if settings.outbound.transport == "maildir":
        folders.append(("[outbound] maildir", settings.outbound.maildir))
    folders.append(("[archive] output_dir", settings.archive.output_dir))
    folders.append(("[security] token_key_file", settings.security.token_key_file.parent))
    return folders


def _unusable(folder: Path) -> str | None:
    """Why mailflow cannot write into folder, or None once it exists and can."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the folder {folder}: {exc.strerror}"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable by this user (uid {os.getuid()})"
    return None
