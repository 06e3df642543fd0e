"""Render the wording of every email from ``templates/mail``, and of the
reports from ``templates/report``. The only importer of jinja2 for mail
and reports, and the one place that finds the templates folder
(``TEMPLATES``, for the site as well).

Each email is a pair ``<name>.txt.j2`` / ``<name>.html.j2``. The text
template's first line is ``Subject: ...``: the subject, or, for an email
about a case (whose subject is the case's own), the body's first line,
which the HTML layout shows from the ``title`` block. HTML templates
autoescape everything; text templates do not need to.

Every email is rendered in its reader's language (SPEC section 3a): the
templates' sentences are ``{% trans %}`` blocks of Jinja2's i18n extension
with new-style gettext (placeholders by name, autoescaping kept), read
through the catalog of ``mailflow.catalogs.translations``. Each language
has an Environment of its own with its catalog installed, so that macros
of imported partials (which see globals, not the caller's context) speak
the same language, and two threads rendering two languages never meet.
The global ``language`` holds the BCP 47 tag; the filters ``day``,
``month`` and ``moment`` write dates as the reader's locale does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import (
    BytecodeCache,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    pass_context,
    select_autoescape,
)
from jinja2.bccache import Bucket
from jinja2.runtime import Context

from mailflow import catalogs, languages, words


def templates_folder() -> Path:
    """The installed package ``mailflow.templates``: ``templates/`` of the
    checkout in an editable install, ``mailflow/templates/`` in a wheel
    (``pyproject.toml`` maps the one onto the other)."""
    folder = resources.files("mailflow.templates")
    if not isinstance(folder, Path):
        raise RuntimeError(f"mailflow's templates must be files on disk, not {folder!r}")
    return folder


TEMPLATES = templates_folder()


class CompiledTemplates(BytecodeCache):
    """Each template compiled once per process, however many Environments
    load it (every build of the app makes its own; the test suite builds
    hundreds). A changed template no longer matches its checksum and is
    compiled again. The code depends on the Environment's options, so each
    configuration of Environment keeps a cache of its own."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


_COMPILED = CompiledTemplates()


class _TemplatesRead(FileSystemLoader):
    """A templates folder whose files are read once per process: they
    change only with mailflow, and every Environment (one per language, in
    every build of the app) would otherwise read each file again and check
    its time on each use. Editing a template takes a restart."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self._read: dict[str, tuple[str, str]] = {}

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        if template not in self._read:
            source, filename, _ = super().get_source(environment, template)
            self._read[template] = (source, filename)
        source, filename = self._read[template]
        return source, filename, _unchanged


def _unchanged() -> bool:
    return True


@cache
def templates_loader(folder: Path = TEMPLATES) -> FileSystemLoader:
    """The one loader of a templates folder, shared by every Environment."""
    return _TemplatesRead(folder)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def mailto(address: str, subject: str = "", body: str = "") -> str:
    """A mailto: URL per RFC 6068: every reserved character of the subject
    and body percent-encoded, line breaks as CRLF."""
    query = []
    if subject:
        query.append("subject=" + quote(subject, safe=""))
    if body:
        query.append("body=" + quote(body.replace("\r\n", "\n").replace("\n", "\r\n"), safe=""))
    return f"mailto:{quote(address, safe='@+')}" + ("?" + "&".join(query) if query else "")


@pass_context
def word(context: Context, group: str, english: str) -> str:
    """``{{ word("field", "Priority area") }}``: the word people of the
    email's ``language`` see for an English field name or action word."""
    return words.label(group, english, context.get("language") or "en")


class Renderer:
    def __init__(self, templates: Path = TEMPLATES, **globals_: Any) -> None:
        self._templates = templates
        self._globals = globals_
        self._envs: dict[str, Environment] = {}

    def environment(self, language: str = languages.ENGLISH) -> Environment:
        """The Environment of one language, made on first use. A race
        makes two alike and keeps one; both are correct."""
        env = self._envs.get(language)
        if env is None:
            env = self._envs.setdefault(language, self._build(language))
        return env

    def _build(self, language: str) -> Environment:
        env = Environment(
            loader=templates_loader(self._templates),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            bytecode_cache=_COMPILED,
            extensions=["jinja2.ext.i18n", "jinja2.ext.do"],  # do: {% do rows.append(...) %}
        )
        env.install_gettext_translations(  # type: ignore[attr-defined]
            catalogs.translations(language), newstyle=True
        )
        env.globals.update(self._globals)
        env.globals["language"] = language
        env.globals["word"] = word
        env.filters.update(
            day=partial(catalogs.day, tag=language),
            month=partial(catalogs.month, tag=language),
            moment=partial(catalogs.moment, tag=language),
        )
        return env

    def mail(self, name: str, *, language: str = languages.ENGLISH, **context: Any) -> Rendered:
        env = self.environment(language)
        text = env.get_template(f"mail/{name}.txt.j2").render(**context)
        first, _, body = text.partition("\n")
        if not first.startswith("Subject: "):
            raise ValueError(f"templates/mail/{name}.txt.j2 must start with 'Subject: '")
        html = env.get_template(f"mail/{name}.html.j2").render(**context)
        purpose = " ".join(first.removeprefix("Subject: ").split())
        if context.get("case") is not None:
            # The subject names the case (the outbox fixes it for the case's
            # life), so what this email is about opens its body.
            body = f"{purpose}\n\n{body.strip()}"
        return Rendered(purpose, body.strip() + "\n", html)

    def render(self, name: str, *, language: str = languages.ENGLISH, **context: Any) -> str:
        """Any other template, e.g. ``report/report.txt.j2``; escaped when
        its name ends in ``html.j2``, as for mail."""
        return self.environment(language).get_template(name).render(**context)
