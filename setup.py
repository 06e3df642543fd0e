"""The wheel's one build step beyond pyproject.toml: compile each language's
catalog (``mailflow/locale/<locale>/LC_MESSAGES/<domain>.po``) into the
``.mo`` that ``mailflow.languages`` reads, inside the built package. The
``.mo`` files are never committed; Babel is in ``[build-system].requires``.
Fuzzy and untranslated messages are left out, so they read in English.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from setuptools import setup
from setuptools.command.build_py import build_py

LOCALE = Path("mailflow") / "locale"


class BuildWithCatalogs(build_py):
    def run(self) -> None:
        super().run()
        for po in sorted(
            Path(__file__).resolve().parent.joinpath(LOCALE).glob("*/LC_MESSAGES/*.po")
        ):
            relative = po.relative_to(po.parents[4])
            target = Path(self.build_lib) / relative.with_suffix(".mo")
            target.parent.mkdir(parents=True, exist_ok=True)
            with po.open("rb") as source:
                catalog = read_po(source, locale=po.parents[1].name, domain=po.stem)
            with target.open("wb") as compiled:
                write_mo(compiled, catalog)


setup(cmdclass={"build_py": BuildWithCatalogs})
