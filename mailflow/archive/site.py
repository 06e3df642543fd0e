"""Render the archive from the database into ``[archive].output_dir``.

``Site.catch_up`` applies queued ``SiteChange`` rows: it rewrites the pages
that show the changed cases (``pages.pages_changed_by``) and marks the rows
done. ``Site.build`` rewrites everything, the guide (``/guide/``, how to take
part) included; a funded internship's change rewrites the guide alone, for
its count of funded places left. Both hold a lock on the output
folder, so only one writer renders at a time and a page never goes back to
an older state; and every file is written to a temporary name and renamed,
so a reader never sees half a page.

Every piece of text that came from an email is escaped (jinja2 autoescape
everywhere), links are made only for http(s) URLs, and email addresses are
removed from it: no participant's address ever reaches the site.

The guide's wording is marked for translation (``{% trans %}``) and read
through the i18n extension: each shipped language's version is the same
template rendered by an Environment with that language's catalog installed,
written to ``guide/<tag>/`` (the tag in lower case, SPEC section 5), and
``guide/`` is the English one; each links to all the others. The rest of
the site stays in English, the language of the published cases.

A full build writes its thousands of files without flushing each one, and
without ``sync()``, which flushes every file of the machine (the database's
and the spool's too) and makes the service wait for all of them. The site is
a copy of the database, so it is enough to know whether its files can have
been lost: only a machine that stopped before writing them back can lose
them, and that machine starts with a new boot ID. The build records the boot
it was written in (``.boot``); at start, a site written in another boot,
or with no such record, is built again.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined
from markupsafe import Markup, escape
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailflow import catalogs, languages
from mailflow.archive import pages
from mailflow.archive.pages import (
    CasePage,
    Feed,
    Guide,
    Index,
    Listing,
    ListPage,
    Page,
    SearchIndex,
    SearchShard,
)
from mailflow.clock import Clock
from mailflow.config import Settings
from mailflow.documents import ACCEPTED, FORMATS
from mailflow.economies import Economies, Economy
from mailflow.notify.render import TEMPLATES, CompiledTemplates, mailto, templates_loader, word
from mailflow.store.db import Database
from mailflow.store.models import Case, Document, Publication, SiteChange
from mailflow.store.queries import funded_places_taken
from mailflow.vocab import AREAS, Kind, PriorityArea
from mailflow.workflow.states import State

STATIC = ("style.css", "search.js", "favicon.svg")
_BATCH = 200
_URL = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
# Any word holding an at sign, full-width too: quoted local parts, IP
# literals and "ana@localhost" are addresses as well.
_ADDRESS = re.compile(r"\S*[@\uff20]\S*")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_EXCERPT = 300
_COMPILED = CompiledTemplates()  # this module's Environment options, its own cache
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # Linux: new at each start of the machine
_BOOT_MARK = ".boot"  # the boot the last full build was written in

Progress = Callable[[str], None]


@dataclass(frozen=True)
class CaseView:
    """What the site shows of a published case."""

    id: str
    title: str
    kind: Kind
    area: PriorityArea
    economy: Economy
    organization: str
    summary: str
    published: datetime
    validation: str | None = None  # how it was validated: workflow/validation.py
    focal_silent_days: int | None = None

    @property
    def url(self) -> str:
        return f"cases/{self.id}/"

    def search_entry(self) -> dict[str, str]:
        return {
            "id": self.id,
            "title": self.title,
            "kind": self.kind.value,
            "area": self.area.slug,
            "economy": self.economy.code.lower(),
            "organization": self.organization,
            "date": self.published.date().isoformat(),
            "url": self.url,
            "text": self.summary[:_EXCERPT],
            # What the search box matches: search.js folds the query the same way.
            "words": search_folded(
                " ".join([self.id, self.title, self.organization, self.summary[:_EXCERPT]])
            ),
        }


def guide_path(tag: str) -> str:
    """Where the guide of one language lives: ``guide/`` in English,
    ``guide/es/``, ``guide/zh-hans/`` (SPEC section 5)."""
    return "guide/" if tag == languages.ENGLISH else f"guide/{languages.url_tag(tag)}/"


def search_folded(text: str) -> str:
    """Text as the search compares it: lower case, compatibility forms
    decomposed (NFKD) and combining marks removed, so that ``promperu``
    finds PROMPERÚ (SPEC section 5). ``fold`` in search.js does the same
    to the query; the two must stay alike."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.category(c).startswith("M"))


@dataclass(frozen=True)
class CommentView:
    """A published comment as the case page shows it: never an address."""

    name: str
    economy: str
    at: datetime
    text: str


@dataclass(frozen=True)
class Download:
    name: str
    size: int
    format: str  # "PDF", "DOCX"...


def shown(text: str) -> str:
    """Text from an email as the site may show it: without the characters
    XML forbids (one would break the feed for everyone) and without
    anything that looks like an email address."""
    text = _NOT_XML.sub("", text)
    return _ADDRESS.sub("[address removed]", text) if "@" in text or "\uff20" in text else text


def paragraphs(text: str) -> Markup:
    """Plain text as escaped paragraphs, with http(s) URLs as links."""
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    return Markup("\n").join(
        Markup("<p>{}</p>").format(Markup(str(_linked(b)).replace("\n", "<br>\n"))) for b in blocks
    )


def _linked(text: str) -> Markup:
    parts: list[Markup] = []
    position = 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;:!?)]}")
        parts += [
            escape(text[position : match.start()]),
            Markup('<a href="{0}" rel="nofollow ugc noopener">{0}</a>').format(url),
        ]
        position = match.start() + len(url)
    parts.append(escape(text[position:]))
    return Markup("").join(parts)


def extension_of(content_type: str) -> str:
    return next((ext for ext, kind in FORMATS.items() if kind == content_type), "bin")


def web_name(filename: str, content_type: str, fallback: str) -> str:
    """A file name safe in a URL and on any disk, with the extension of
    the format the document really is."""
    extension = extension_of(content_type)
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-_")[:80] or fallback
    return f"{stem}.{extension}"


class Site:
    def __init__(
        self, settings: Settings, economies: Economies, clock: Clock, templates: Path = TEMPLATES
    ) -> None:
        self.root = settings.archive.output_dir
        self.settings = settings
        self.base_url = settings.site.base_url.rstrip("/") + "/"
        self.economies = economies
        self.clock = clock
        self._static = templates / "site" / "static"
        self._templates = templates
        self._envs: dict[str, Environment] = {}
        self._env = self._environment(languages.ENGLISH)
        domain = settings.site.domain
        self._comment_address = f"{settings.addresses.comment}+{{}}@{domain}"

    def _environment(self, language: str) -> Environment:
        """The Environment of one language: English for every page, and one
        per shipped language for the guide, each with its catalog."""
        env = self._envs.get(language)
        if env is not None:
            return env
        env = Environment(
            loader=templates_loader(self._templates),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            bytecode_cache=_COMPILED,
            extensions=["jinja2.ext.i18n"],
        )
        env.policies["ext.i18n.trimmed"] = True  # a msgid is one line, however wrapped
        env.install_gettext_translations(  # type: ignore[attr-defined]
            catalogs.translations(language), newstyle=True
        )
        settings, domain = self.settings, self.settings.site.domain
        addresses = settings.addresses
        env.globals.update(
            site=settings.site,
            language=language,
            areas=AREAS,
            economies=list(self.economies),
            submit_address=f"{addresses.submit}@{domain}",
            help_address=f"{addresses.help}@{domain}",
            register_address=f"{addresses.register_}@{domain}",
            status_address=f"{addresses.status}@{domain}",
            internship_address=f"{addresses.internship}@{domain}",
            mailto=mailto,
            word=word,  # the guide shows the help form
        )
        env.filters.update(paragraphs=paragraphs, day=_day, size=_size)
        return self._envs.setdefault(language, env)

    # -- what the rest of mailflow calls -------------------------------------

    def catch_up(self, database: Database) -> int:
        """Rewrite the pages of every case changed since the last pass;
        returns how many changes were applied."""
        with self._locked():
            if not (self.root / "index.html").exists() or not self._written_in_this_boot():
                # `tick` or `act` may be the first to write after the machine
                # stopped, with no `mailflow run` to build at its start.
                self._build_locked(database, lambda _: None)
                return 0
            with database.reading() as session:
                changes = session.execute(
                    select(SiteChange.id, Case, Publication)
                    .join(Case, Case.id == SiteChange.case_id)
                    .outerjoin(Publication, Publication.case_id == SiteChange.case_id)
                    .where(SiteChange.done_at.is_(None))
                    .order_by(SiteChange.id)
                    .limit(_BATCH)
                ).all()
                if not changes:
                    return 0
                todo: set[Page] = set()
                for _, case, publication in changes:
                    todo |= pages.pages_changed_by(session, case, publication)
                removed = self._render_all(session, todo)
            for folder in removed:
                shutil.rmtree(folder, ignore_errors=True)
            self._mark_done(database, [change_id for change_id, _, _ in changes])
            return len(changes)

    def build(self, database: Database, progress: Progress = lambda _: None) -> int:
        """Rewrite the whole site; returns the number of cases on it."""
        with self._locked():
            return self._build_locked(database, progress)

    def ensure(self, database: Database) -> None:
        """At start: a first build, a build again if the machine stopped
        since the last one (its files may not have reached the disk), or
        else fresh stylesheet, script and guide after an upgrade of mailflow."""
        if not (self.root / "index.html").exists() or not self._written_in_this_boot():
            self.build(database)
            return
        with self._locked():
            self._write_fixed(durable=True)
            with database.reading() as session:
                self._write_guide(session, durable=True)

    def unsubscribe_page(self, outcome: str, secret: str) -> bytes:
        """The page of the one-click unsubscribe URL: "ask" (a button),
        "done" or "unknown"."""
        html = self._env.get_template("site/unsubscribe.html.j2").render(
            root="../", outcome=outcome, secret=secret
        )
        return html.encode()

    # -- building --------------------------------------------------------------

    def _build_locked(self, database: Database, progress: Progress) -> int:
        with database.reading() as session:
            # Exactly the changes this snapshot shows are rendered, so exactly
            # they are marked done (ids need not commit in order).
            pending = list(
                session.scalars(select(SiteChange.id).where(SiteChange.done_at.is_(None)))
            )
            self._write_fixed(durable=False)
            for stray in self.root.rglob(".*.tmp"):
                stray.unlink(missing_ok=True)  # left by a crash mid-write
            progress("writing case pages")
            shown: set[str] = set()
            for publication, case in session.execute(pages.live()).yield_per(_BATCH):
                view = self._view(publication, case)
                self._write_case(session, view, case, durable=False)
                shown.add(view.id)
                if len(shown) % 1000 == 0:
                    progress(f"{len(shown)} case pages written")
            progress("writing lists, feed and search index")
            for listing in self._listings():
                counter = listing.counter
                for number in range(1, _last_run(session, counter, pages.PAGE_SIZE) + 1):
                    self._render(session, ListPage(listing, number), durable=False)
            last_shard = _last_run(session, "archive", pages.SHARD_SIZE)
            for number in range(1, last_shard):  # the newest is inside search.json
                self._render(session, SearchShard(number), durable=False)
            for page in (Index(), Feed(), SearchIndex(), Guide()):
                self._render(session, page, durable=False)
            self._remove_cases_not_in(shown)
        self._mark_boot()
        if pending:
            self._mark_done(database, pending)
        progress(f"done: {len(shown)} cases in {self.root}")
        return len(shown)

    def _listings(self) -> Iterator[Listing]:
        for area in AREAS:
            yield Listing("area", area.number)
        for economy in self.economies:
            yield Listing("economy", economy.code)

    def _write_fixed(self, *, durable: bool) -> None:
        """The stylesheet, the script and the search page: they change
        only with mailflow itself."""
        for name in STATIC:
            self._write(f"static/{name}", (self._static / name).read_bytes(), durable=durable)
        self._page("search/index.html", "site/search.html.j2", durable=durable)

    def _remove_cases_not_in(self, shown: set[str]) -> None:
        folder = self.root / "cases"
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.is_dir() and entry.name not in shown:
                    shutil.rmtree(entry)

    # -- one page ----------------------------------------------------------------

    def _render_all(self, session: Session, todo: set[Page]) -> list[Path]:
        """Case pages first, then the lists, then the index, feed and search:
        a link never leads to a page not yet written. The folders of cases
        taken off are returned, to remove once no list links to them.
        Flushed one by one only where there is no boot ID: elsewhere a
        machine that stopped before writing them back starts in a new boot,
        and the site is built again (``catch_up`` checks it first)."""
        durable = _boot_id() is None
        removed = []
        for page in sorted(todo, key=_writing_order):
            if isinstance(page, CasePage):
                row = session.execute(
                    pages.live().where(Publication.case_id == page.case_id)
                ).first()
                if row is None:
                    public_id = session.scalar(
                        select(Case.public_id).where(Case.id == page.case_id)
                    )
                    removed.append(self.root / "cases" / str(public_id))
                else:
                    publication, case = row
                    self._write_case(session, self._view(publication, case), case, durable=durable)
            else:
                self._render(session, page, durable=durable)
        return removed

    def _render(self, session: Session, page: Page, *, durable: bool) -> None:
        if isinstance(page, ListPage):
            self._write_list(session, page, durable=durable)
        elif isinstance(page, Index):
            self._write_index(session, durable=durable)
        elif isinstance(page, Feed):
            self._write_feed(session, durable=durable)
        elif isinstance(page, SearchIndex):
            self._write_search_index(session, durable=durable)
        elif isinstance(page, Guide):
            self._write_guide(session, durable=durable)
        elif isinstance(page, SearchShard):
            if page.number == _last_run(session, "archive", pages.SHARD_SIZE):
                return  # the newest shard lives inside search.json
            entries = [
                self._view(p, c).search_entry()
                for p, c in session.execute(pages.in_shard(page.number))
            ]
            self._write(f"search/{page.number}.json", _json({"cases": entries}), durable=durable)

    def _write_case(self, session: Session, view: CaseView, case: Case, *, durable: bool) -> None:
        document = session.scalars(
            select(Document).where(Document.case_id == case.id).order_by(Document.id.desc())
        ).first()
        download = None
        if document is not None:
            download = Download(
                web_name(document.filename, document.content_type, view.id),
                document.size,
                extension_of(document.content_type).upper(),
            )
            target = self.root / view.url / download.name
            if not target.exists() or target.stat().st_size != document.size:
                self._write(f"{view.url}{download.name}", document.content, durable=durable)
        self._page(
            f"{view.url}index.html",
            "site/case.html.j2",
            durable=durable,
            case=view,
            download=download,
            comments=self._comments(session, case),
            comment_address=self._comment_address.format(view.id),
        )

    def _comments(self, session: Session, case: Case) -> list[CommentView]:
        published = session.scalars(
            select(Case)
            .where(
                Case.about_id == case.id,
                Case.kind == Kind.COMMENT,
                Case.state == State.PUBLISHED,
            )
            .order_by(Case.state_since, Case.id)
        )
        return [
            CommentView(
                name=shown(comment.author.name) or "A participant",
                economy=self.economies.get(comment.economy).name if comment.economy else "",
                at=comment.state_since,
                text=shown(comment.summary),
            )
            for comment in published
        ]

    def _write_list(self, session: Session, page: ListPage, *, durable: bool) -> None:
        listing = page.listing
        if listing.by == "area":
            area = AREAS[int(listing.key) - 1]
            folder, title, intro = f"areas/{area.slug}/", area.name, "Priority area"
        else:
            economy = self.economies.get(str(listing.key))
            folder, title, intro = f"economies/{economy.code.lower()}/", economy.name, "Economy"
        last = _last_run(session, listing.counter, pages.PAGE_SIZE)
        # Most lists of a young archive have never had a case: no query.
        ever = _last_ordinal(session, listing.counter) > 0
        found = session.execute(pages.in_run(listing, page.number)) if ever else ()
        cases = [self._view(p, c) for p, c in found]
        context = {
            "title": title,
            "intro": intro,
            "cases": cases,
            "folder": folder,
            "number": page.number,
            "last": last,
            "total": _counts(session, listing.by).get(listing.key, 0),  # front only
        }
        front = page.number == last
        path = f"{folder}index.html" if front else f"{folder}page/{page.number}/index.html"
        self._page(path, "site/list.html.j2", durable=durable, **context)

    def _write_index(self, session: Session, *, durable: bool) -> None:
        newest = [
            self._view(p, c) for p, c in session.execute(pages.live().limit(pages.NEWEST_ON_INDEX))
        ]
        self._page(
            "index.html",
            "site/index.html.j2",
            durable=durable,
            newest=newest,
            area_counts=_counts(session, "area"),
            economy_counts=_counts(session, "economy"),
        )

    def _write_feed(self, session: Session, *, durable: bool) -> None:
        entries = [
            self._view(p, c) for p, c in session.execute(pages.live().limit(pages.FEED_SIZE))
        ]
        xml = self._env.get_template("site/feed.atom.j2").render(
            entries=entries,
            base=self.base_url,
            updated=entries[0].published if entries else self.clock.now(),
        )
        self._write("feed.atom", xml.encode(), durable=durable)

    def _write_search_index(self, session: Session, *, durable: bool) -> None:
        """``search.json`` holds the newest shard's cases itself and names
        the older shards, so it stays small however large the archive."""
        last = _last_run(session, "archive", pages.SHARD_SIZE)
        entries = [
            self._view(p, c).search_entry() for p, c in session.execute(pages.in_shard(last))
        ]
        shards = [f"search/{number}.json" for number in range(1, last)]
        self._write("search.json", _json({"cases": entries, "older": shards}), durable=durable)

    def _write_guide(self, session: Session, *, durable: bool) -> None:
        """How to take part, with what this configuration says: the
        addresses, the document's limits, the review stages, and the funded
        internship places left; once in each shipped language."""
        settings = self.settings
        cap = settings.internships.funded_cap
        versions = [(tag, catalogs.own_name(tag), guide_path(tag)) for tag in languages.SHIPPED]
        context: dict[str, Any] = dict(
            accepted_formats=ACCEPTED,
            max_attachment_mb=settings.limits.max_attachment_bytes // 1_048_576,
            stages=settings.workflow.stages,
            escalate_days=settings.workflow.escalate_days,
            moderation=settings.comments.moderation,
            comment_example=self._comment_address.format("BP-2026-0001"),
            funded_cap=cap,
            places_left=max(0, cap - funded_places_taken(session)),
            travel_eligible=[economy for economy in self.economies if economy.travel_eligible],
            versions=versions,
        )
        for tag, _, folder in versions:
            env = self._environment(tag)
            self._page_in(
                env, f"{folder}index.html", "site/guide.html.j2", context, durable=durable
            )

    # -- writing -----------------------------------------------------------------

    def _view(self, publication: Publication, case: Case) -> CaseView:
        return CaseView(
            id=case.public_id,
            title=shown(case.title),
            kind=Kind(case.kind or Kind.BEST_PRACTICE),
            area=AREAS[publication.area - 1],
            economy=self.economies.get(publication.economy),
            organization=shown(case.organization),
            summary=shown(case.summary),
            published=publication.published_at,
            validation=case.validation,
            focal_silent_days=case.focal_silent_days,
        )

    def _page(self, path: str, template: str, *, durable: bool, **context: Any) -> None:
        self._page_in(self._env, path, template, context, durable=durable)

    def _page_in(
        self, env: Environment, path: str, template: str, context: dict[str, Any], *, durable: bool
    ) -> None:
        root = "../" * path.count("/")
        html = env.get_template(template).render(root=root, **context)
        self._write(path, html.encode(), durable=durable)

    def _write(self, relative: str, data: bytes, *, durable: bool) -> None:
        """Write to a temporary name, then rename over the old file."""
        path = self.root / relative
        self._public_folder(path.parent)
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                if durable:
                    file.flush()
                    os.fsync(file.fileno())
            os.chmod(temporary, 0o644)  # mkstemp makes 0600; the web server reads it
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _public_folder(self, folder: Path) -> None:
        """Create ``folder`` (and those between it and the site's root)
        readable and searchable by everyone: the web server (nginx's
        www-data) reads the site, and the systemd unit's UMask=0027 would
        make new folders 0750, closed to it."""
        missing = []
        while folder != self.root and not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        for new in reversed(missing):
            new.mkdir(exist_ok=True)
            os.chmod(new, 0o755)

    def _written_in_this_boot(self) -> bool:
        boot = _boot_id()
        if boot is None:
            return True  # no boot ID here: the build flushed with sync() instead
        mark = self.root / _BOOT_MARK
        return mark.exists() and mark.read_text().strip() == boot

    def _mark_boot(self) -> None:
        """Record the boot the build's files were written in, or flush them
        all where there is no boot ID. The mark itself needs no flush: lost
        with the rest, it is missing, and a missing mark means a build too."""
        boot = _boot_id()
        if boot is None:
            os.sync()
            return
        self._write(_BOOT_MARK, boot.encode() + b"\n", durable=False)

    def _mark_done(self, database: Database, change_ids: list[int]) -> None:
        with database.transaction() as session:
            session.execute(
                update(SiteChange)
                .where(SiteChange.id.in_(change_ids))
                .values(done_at=self.clock.now())
            )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.root.stat().st_mode & 0o755 != 0o755:
            with suppress(PermissionError):  # not ours: its owner decides
                os.chmod(self.root, 0o755)  # for the web server, as _public_folder says
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


# The site writer reads each pass in one session (one snapshot), and many
# pages show the same figures: each is read once per session, not per page.
def _last_ordinal(session: Session, counter: str) -> int:
    """0 for a list nothing was ever published in. All counters are read
    at once: a build asks for each list's."""
    known: dict[str, int] | None = session.info.get("site_counters")
    if known is None:
        known = session.info["site_counters"] = pages.counter_values(session)
    return known.get(counter, 0)


def _last_run(session: Session, counter: str, size: int) -> int:
    return pages.newest_run(_last_ordinal(session, counter), size)


def _counts(session: Session, by: str) -> dict[int | str, int]:
    known: dict[str, dict[int | str, int]] = session.info.setdefault("site_counts", {})
    if by not in known:
        known[by] = pages.counts(session, by)
    return known[by]


def _boot_id() -> str | None:
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def _writing_order(page: Page) -> tuple[int, int]:
    """Cases, then lists from their oldest page (the newest links to it),
    then the index, feed and search."""
    if isinstance(page, CasePage):
        return 0, 0
    if isinstance(page, ListPage | SearchShard):
        return 1, page.number
    return 2, 0


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _day(moment: datetime) -> str:
    return f"{moment.day} {moment:%B %Y}"


def _size(size: int) -> str:
    if size < 1024 * 1024:
        return f"{max(1, round(size / 1024))} KB"
    return f"{size / 1024 / 1024:.1f} MB"
