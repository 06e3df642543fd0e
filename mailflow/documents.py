"""The attached document: which file is it, what is it really, what may it
be called. Types are decided by content, never by the name or the declared
MIME type, and names are sanitised before they reach a disk or a page.

Only six formats are accepted (SPEC section 3), so the check is a short
table of signatures plus a look inside ZIP containers, which is what tells
DOCX from ODT; libmagic would add a system dependency for no gain here.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from pathvalidate import sanitize_filename

from mailflow.parse import Attachment

FORMATS = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "doc": "application/msword",
    "odt": "application/vnd.oasis.opendocument.text",
    "rtf": "application/rtf",
    "txt": "text/plain",
}
ACCEPTED = tuple(extension.upper() for extension in FORMATS)  # the templates list them
_OLE2 = bytes.fromhex("d0cf11e0a1b11ae1")
_MAX_NAME = 120


@dataclass(frozen=True)
class Document:
    filename: str
    extension: str
    content_type: str
    content: bytes


def detect_format(content: bytes) -> str | None:
    """The extension of the format the bytes really are, or None."""
    if content.startswith(b"%PDF-"):
        return "pdf"
    if content.startswith(b"{\\rtf"):
        return "rtf"
    if content.startswith(_OLE2):
        return "doc"
    if content.startswith(b"PK\x03\x04"):
        return _zip_format(content)
    if _is_text(content):
        return "txt"
    return None


def _zip_format(content: bytes) -> str | None:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = set(archive.namelist())
            if "word/document.xml" in names:
                return "docx"
            if "mimetype" in names:
                # Read only the first bytes: a zip bomb must not be unpacked.
                with archive.open("mimetype") as entry:
                    mimetype = entry.read(100)
                if mimetype.strip() == FORMATS["odt"].encode():
                    return "odt"
    except (zipfile.BadZipFile, KeyError, OSError, ValueError):
        return None
    return None


def _is_text(content: bytes) -> bool:
    if not content or b"\x00" in content[:65536]:
        return False
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def safe_filename(written: str, extension: str) -> str:
    """A name that is safe on any disk and URL path: no folders, no control
    characters, no leading dots, bounded length, and the extension of the
    real format (``report.exe`` that is a PDF becomes ``report.pdf``)."""
    base = PureWindowsPath(PurePosixPath(written).name).name
    # pathvalidate removes C0 controls only; C1 (U+0080-U+009F) are controls too.
    base = "".join(c for c in unicodedata.normalize("NFC", base) if unicodedata.category(c) != "Cc")
    stem = base.rsplit(".", 1)[0] if "." in base else base
    stem = sanitize_filename(stem, replacement_text="_").strip(" ._")
    stem = re.sub(r"_+", "_", "_".join(stem.split()))[:_MAX_NAME] or "document"
    return f"{stem}.{extension}"


def pick_document(attachments: tuple[Attachment, ...]) -> tuple[Document | None, list[str]]:
    """The attachment to keep, and the name of each one that was not a
    document (to tell the author why). A real document (PDF, DOCX...) wins over a
    text file, which is often a calendar entry, a vCard or a signature."""
    refused: list[str] = []
    found: list[Document] = []
    for attachment in attachments:
        extension = detect_format(attachment.content)
        if extension is None:
            name = safe_filename(attachment.filename or "attachment", "bin")
            refused.append(name.removesuffix(".bin"))
            continue
        filename = safe_filename(attachment.filename or "document", extension)
        found.append(Document(filename, extension, FORMATS[extension], attachment.content))
    found.sort(key=lambda document: document.extension == "txt")  # stable: order kept
    return (found[0] if found else None), refused
