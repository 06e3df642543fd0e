"""Which pages the archive has, and which of them show a given case.

Lists are cut into fixed runs of ``PAGE_SIZE`` ordinals (see
``Publication``): run 1 holds a list's first 50 cases for ever and is
``page/1/``; the newest run is the list's front page. So publishing a case touches its own
page, the run it lands in, the index, the feed and the search index,
however large the archive grows. The search index is cut the same way
into shards of ``SHARD_SIZE``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from mailflow.store.models import Case, Counter, Publication
from mailflow.vocab import Kind

PAGE_SIZE = 50
SHARD_SIZE = 500
NEWEST_ON_INDEX = 10
FEED_SIZE = 50


@dataclass(frozen=True)
class Listing:
    """The cases of one priority area (``key`` = its number) or of one
    economy (``key`` = its code)."""

    by: str  # "area" or "economy"
    key: int | str

    @property
    def counter(self) -> str:
        return f"archive:{self.by}:{self.key}"


@dataclass(frozen=True)
class Index:
    pass


@dataclass(frozen=True)
class Feed:
    pass


@dataclass(frozen=True)
class SearchIndex:
    pass


@dataclass(frozen=True)
class Guide:
    pass


@dataclass(frozen=True)
class SearchShard:
    number: int


@dataclass(frozen=True)
class CasePage:
    case_id: int


@dataclass(frozen=True)
class ListPage:
    listing: Listing
    number: int


Page = Index | Feed | SearchIndex | SearchShard | CasePage | ListPage | Guide


def run_of(ordinal: int, size: int) -> int:
    return (ordinal - 1) // size + 1


def last_run(session: Session, counter: str, size: int) -> int:
    """The newest run of a list: 1 for a list that is still empty."""
    value = session.scalar(select(Counter.value).where(Counter.name == counter)) or 0
    return newest_run(value, size)


def newest_run(last_ordinal: int, size: int) -> int:
    return max(1, run_of(last_ordinal, size))


def counter_values(session: Session) -> dict[str, int]:
    """Every counter's value: the last ordinal given in each list (a few
    dozen rows, one per list and year)."""
    return {name: value for name, value in session.execute(select(Counter.name, Counter.value))}


def pages_changed_by(session: Session, case: Case, publication: Publication | None) -> set[Page]:
    """The pages to write again after a ``SiteChange`` of this case: those
    showing a published case, or the guide after a funded internship
    took one of its places."""
    if case.kind == Kind.INTERNSHIP:
        return {Guide()}
    return set() if publication is None else pages_showing(session, publication)


def pages_showing(session: Session, publication: Publication) -> set[Page]:
    """Every page that shows this case, or showed it before a change, and
    the front pages of its lists (they show how many cases a list has)."""
    shard = run_of(publication.seq, SHARD_SIZE)
    pages: set[Page] = {
        Index(),
        Feed(),
        SearchIndex(),
        SearchShard(shard),
        CasePage(publication.case_id),
    }
    if shard > 1 and publication.seq % SHARD_SIZE == 1:
        pages.add(SearchShard(shard - 1))  # it just filled up: now a file of its own
    for listing, ordinal in (
        (Listing("area", publication.area), publication.area_seq),
        (Listing("economy", publication.economy), publication.economy_seq),
    ):
        number = run_of(ordinal, PAGE_SIZE)
        pages |= {
            ListPage(listing, number),
            ListPage(listing, last_run(session, listing.counter, PAGE_SIZE)),
        }
        if ordinal % PAGE_SIZE == 1:
            # A new run began: the one before leaves the front page for a
            # page of its own, and the one before that links to it now.
            pages |= {ListPage(listing, n) for n in (number - 1, number - 2) if n >= 1}
    return pages


def live() -> Select[Publication, Case]:
    """Published cases with their places, newest first."""
    return (
        select(Publication, Case)
        .join(Case, Case.id == Publication.case_id)
        .where(Publication.withdrawn_at.is_(None))
        .order_by(Publication.seq.desc())
    )


def in_run(listing: Listing, number: int) -> Select[Publication, Case]:
    first = (number - 1) * PAGE_SIZE + 1
    if listing.by == "area":
        return live().where(
            Publication.area == listing.key,
            Publication.area_seq.between(first, first + PAGE_SIZE - 1),
        )
    return live().where(
        Publication.economy == listing.key,
        Publication.economy_seq.between(first, first + PAGE_SIZE - 1),
    )


def in_shard(number: int) -> Select[Publication, Case]:
    first = (number - 1) * SHARD_SIZE + 1
    return live().where(Publication.seq.between(first, first + SHARD_SIZE - 1))


def counts(session: Session, by: str) -> dict[int | str, int]:
    """Live cases per area or per economy."""
    column = Publication.area if by == "area" else Publication.economy
    rows = session.execute(
        select(column, func.count()).where(Publication.withdrawn_at.is_(None)).group_by(column)
    )
    return {key: number for key, number in rows}  # type: ignore[misc]
