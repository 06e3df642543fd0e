"""The forgiving ``Key: value`` form of SPEC section 3, as pure functions.

Keys in any case and order, from a table of names people actually write;
a value continues on indented lines; the summary runs until the next known
key. Quoted text and signatures of a reply are dropped first, so answering
in the thread with only the corrections works, and so is a sign-off at the
end ("Saludos, Rosa"), so that it never ends a summary.

``comment_text`` is the stricter cousin for text that is stored and shown to
other people (review comments): it knows the quote headers of the common mail
clients in the languages of the economies, and it cuts only at their exact
shapes, because a lost comment is worse than a stray quote header. Nothing
here reads mail or touches the database.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from mailflow.economies import normalise_name
from mailflow.words import in_every_language, leading, pgettext

# Field names, folded; the marked ones (``pgettext("field", ...)``) are also
# understood in every shipped language ("Economía", "经济体", "Nền kinh tế").
SUBMISSION_KEYS: Mapping[str, str] = in_every_language(
    {
        pgettext("field", "Title"): "title",
        pgettext("field", "Kind"): "kind",
        "type": "kind",
        pgettext("field", "Economy"): "economy",
        "country": "economy",
        pgettext("field", "Priority area"): "area",
        "area": "area",
        "priority": "area",
        "priority category": "area",  # the seed portal's own label
        "category": "area",
        pgettext("field", "Organization"): "organization",
        "organisation": "organization",
        "org": "organization",
        pgettext("field", "Summary"): "summary",
        "abstract": "summary",
        # Translators: another person to write to about the case.
        pgettext("field", "Second contact"): "second_contact",
        pgettext("field", "Name"): "name",
        "full name": "name",
        pgettext("field", "Author"): "author",  # an administrator submitting for someone else
        # Read in every form: mailflow.languages.match (SPEC section 3a).
        pgettext("field", "Language"): "language",
    }
)
# "Digests: yes" in a registration.
DIGEST_KEYS: Mapping[str, str] = in_every_language(
    # Translators: an email listing the newly published cases.
    {pgettext("field", "Digests"): "digests", "digest": "digests"}
)

RUNS_TO_NEXT_KEY = frozenset({"summary"})

# A key is letters of any script (with the vowel signs of Thai and the
# accents of text written decomposed) and spaces; full-width colons too.
_MARK = "\u0300-\u036f\u0e31\u0e34-\u0e3a\u0e47-\u0e4e"
_KEY_LINE = re.compile(rf"^\s{{0,3}}([^\W\d_](?:[^\W\d_]|[{_MARK} ]){{0,30}}?)\s*[:：]\s*(.*)$")
_REPLY_MARKERS = (
    re.compile(r"^On .{0,200}wrote:\s*$"),
    re.compile(r"^-{2,}\s*Original Message\s*-{2,}", re.IGNORECASE),
    re.compile(r"^_{10,}\s*$"),
    re.compile(r"^-- ?$"),
    re.compile(r"^From: .+ <?\S+@\S+>?\s*$"),
)


def strip_reply(text: str) -> str:
    """The new part of a reply: no quoted lines, nothing after the quote
    header, the original-message separator or the signature delimiter."""
    kept: list[str] = []
    for line in text.splitlines():
        if any(marker.match(line) for marker in _REPLY_MARKERS):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line)
    return "\n".join(kept)


# The shapes below are what Gmail, Apple Mail, Thunderbird and Outlook write
# above or around the text they quote. Each one needs a time of day (or, for
# Chinese, a year) and must end the line with a "wrote" word or the sender's
# address and a colon, so a sentence such as "On Monday we wrote: ..." is not
# taken for one. Lengths are bounded so a hostile one-line body stays fast.
_ATTRIBUTIONS = (
    re.compile(r"^On\s.{0,150}\d[:.]\d\d.{0,150}\swrote:$"),  # Gmail, Apple Mail, Thunderbird
    re.compile(r"^El\s.{0,150}\d[:.]\d\d.{0,150}\sescribió:$"),
    re.compile(r"^Le\s.{0,150}\d[:.]\d\d.{0,150}\sa\sécrit\s?:$"),
    re.compile(r"^Em\s.{0,150}\d[:.]\d\d.{0,150}\sescreveu:$"),
    re.compile(r"^.{1,150}\s[于於]\s?\d{4}年.{0,40}[写寫]道\s?[:：]$"),
    # Gmail in Japanese, Korean, Russian, Vietnamese, Indonesian, German...:
    # a time, the sender's address in brackets, at most a short verb, a colon.
    re.compile(r"^.{0,150}\d[:.]\d\d.{0,150}<\s?[^<>\s]+@[^<>\s]+>\)?.{0,20}[:：]$"),
)
# Where the history starts when a client does not quote it with ">".
_HISTORY_SEPARATORS = (
    re.compile(r"^--$"),  # the "-- " signature delimiter, its space often lost
    re.compile(
        r"^-{2,}\s*(Original Message|Mensaje original|Message d'origine|Mensagem original)"
        r"\s*-{2,}$",
        re.IGNORECASE,
    ),
    re.compile(r"^_{10,}$"),  # Outlook's rule above its header block
)
# Outlook's header block, one pattern per line in its order: "From:" alone is
# too common in prose, "From:" followed by "Sent:" and "To:" is not.
_OUTLOOK_HEADER = (
    re.compile(r"^(From|De|发件人|寄件者)\s?[:：]\s*\S"),
    re.compile(
        r"^(Sent|Date|Enviado( el)?|Enviada em|Fecha|Envoyé|Data|发送时间|寄件日期)\s?[:：]"
    ),
    re.compile(r"^(To|Subject|Cc|Para|Asunto|À|Objet|Assunto|收件人|主题|收件者|主旨)\s?[:：]"),
)
# Lines a phone adds below the text; removed only at the very end, so a
# comment that talks about them keeps them.
_SENT_FROM = (
    re.compile(r"^(Sent from my|Enviado desde mi|Enviado do meu|Envoyé de mon) \S.{0,40}$", re.I),
    re.compile(r"^(Sent from|Enviado desde) (Mail|Outlook|Yahoo Mail|Correo)\b.{0,40}$", re.I),
    re.compile(r"^(Get|Obtener|Obtenir) Outlook (for|para|pour) (iOS|Android)\b.{0,60}$", re.I),
    re.compile(r"^发自我的\S{1,20}$"),
)


def comment_text(text: str) -> str:
    """What the person wrote, without the quoted history, the quote header,
    the signature and phone boilerplate; blank runs shortened, lines right
    trimmed, everything else kept as written."""
    lines = [line.rstrip() for line in text.splitlines()]
    kept: list[str] = []
    after_quote = False  # the blank lines around a removed quote make one gap
    i = 0
    while i < len(lines) and not _history_starts(lines, i):
        header = _attribution_size(lines, i)
        if header and not _quote_follows(lines, i + header):
            break  # the history below is not marked with ">", so drop all of it
        line = lines[i]
        if header or _quoted(line):
            after_quote = True
        elif line or not (after_quote and kept and not kept[-1]):
            kept.append(line)  # text between quotes is an answer written inline
            after_quote = after_quote and not line
        i += header or 1
    while kept and (not kept[-1] or any(p.match(kept[-1]) for p in _SENT_FROM)):
        kept.pop()
    return re.sub(r"\n{4,}", "\n\n", "\n".join(kept)).lstrip("\n")


def _history_starts(lines: list[str], i: int) -> bool:
    block = lines[i : i + len(_OUTLOOK_HEADER)]
    return any(p.match(lines[i]) for p in _HISTORY_SEPARATORS) or (
        len(block) == len(_OUTLOOK_HEADER)
        and all(p.match(line) for p, line in zip(_OUTLOOK_HEADER, block, strict=True))
    )


def _attribution_size(lines: list[str], i: int) -> int:
    """0, or how many lines the quote header starting at line i takes."""
    if _is_attribution(lines[i]):
        return 1
    # Gmail wraps a long header once, often right after the "<" of the
    # address; the second line must not be a whole header by itself, or the
    # last line of the comment would be taken with it.
    if i + 1 < len(lines) and not _is_attribution(lines[i + 1]):
        return 2 if _is_attribution(f"{lines[i]} {lines[i + 1]}") else 0
    return 0


def _is_attribution(line: str) -> bool:
    return any(p.match(line) for p in _ATTRIBUTIONS)


def _quote_follows(lines: list[str], start: int) -> bool:
    return _quoted(next((line for line in lines[start:] if line), ""))


def _quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


# The closing words of a letter in the languages of the economies, as a
# whole line, alone or followed by a punctuation mark and a name: "Thanks",
# "Saludos, Rosa", "Best regards,". "Thanks to the fund..." is a sentence,
# not a closing: a name must come after a punctuation mark.
_CLOSING = re.compile(
    r"^(best|best regards|kind regards|warm regards|warmest regards|regards|best wishes"
    r"|all the best|cheers|thanks|thank you|many thanks|thanks a lot|thanks in advance"
    r"|thank you very much|with thanks|sincerely|yours sincerely|sincerely yours"
    r"|yours faithfully|yours truly|respectfully|greetings"
    r"|saludos|saludos cordiales|un saludo|un cordial saludo|atentamente|cordialmente"
    r"|gracias|muchas gracias|un abrazo|abrazos"
    r"|salam|salam hormat|hormat saya|hormat kami|terima kasih|wassalam"
    r"|trân trọng|cảm ơn|xin cảm ơn|thân ái"
    r"|с уважением|спасибо|всего доброго|ขอบคุณ(ครับ|ค่ะ)?|ด้วยความเคารพ"
    r"|谢谢|謝謝|此致敬礼|此致|祝好|よろしくお願いします|よろしくお願いいたします|敬具"
    r"|감사합니다|감사드립니다)"
    r"(\s*[,.!:;，。！：、~-]+\s*([^\d\s,.!?:;][^,!?:;]{0,60})?)?\s*$",
    re.IGNORECASE,
)
# A closing is followed by at most a few short lines: a name, a position,
# an organization, a telephone number.
_SIGNATURE_LINES = 4
_SIGNATURE_WIDTH = 80


def without_closing(lines: list[str]) -> list[str]:
    """The lines without a closing at their end and the short signature
    lines under it; everything else as written."""
    written = [i for i, line in enumerate(lines) if line.strip()]
    for position in written[-1 - _SIGNATURE_LINES :]:
        if _CLOSING.match(lines[position].strip()):
            under = [line for line in lines[position + 1 :] if line.strip()]
            short = all(len(line) <= _SIGNATURE_WIDTH for line in under)
            if short and not any(_KEY_LINE.match(line) for line in under):
                return lines[:position]
    return lines


def parse_form(text: str, keys: Mapping[str, str] = SUBMISSION_KEYS) -> dict[str, str]:
    """Field name -> value for every known key found; the first one wins."""
    fields: dict[str, list[str]] = {}
    current: str | None = None
    for line in without_closing(strip_reply(text).splitlines()):
        match = _KEY_LINE.match(line)
        key = keys.get(normalise_name(match[1])) if match else None
        if match and key is not None:
            current = None if key in fields else key
            if current is not None:
                fields[current] = [match[2].strip()]
        elif current is not None and (current in RUNS_TO_NEXT_KEY or _indented(line)):
            fields[current].append(line.strip())
        elif not line.strip():
            current = current if current in RUNS_TO_NEXT_KEY else None
        else:
            current = None
    return {key: _join(lines) for key, lines in fields.items() if _join(lines)}


def _indented(line: str) -> bool:
    return bool(line.strip()) and line[:1] in (" ", "\t")


def _join(lines: list[str]) -> str:
    """Lines of one value, with blank lines kept as paragraph breaks."""
    paragraphs = " ".join(line if line else "\n\n" for line in lines)
    return "\n\n".join(" ".join(p.split()) for p in paragraphs.split("\n\n") if p.strip())


def first_word(text: str) -> tuple[str, str]:
    """The first word of a reply (lower case, without punctuation), and the
    rest of the reply: an action word and its reason."""
    parts = [*strip_reply(text).split(maxsplit=1), "", ""]
    return parts[0].lower().strip(".,:;!"), parts[1].strip()


# The first word of the line an action link prefills, in every language
# ("Reason (optional, ...):", "Motivo (opcional, ...):", "理由（可选）：").
_PREFILLED = (
    # Translators: the start of the line an action button writes in the email
    # it opens, above the reason a reviewer may add.
    pgettext("link", "Reason"),
    "reasons",
    "comment",
    "comments",
)
_UP_TO_COLON = re.compile(r"^[^:：\n]*[:：]\s*")


def reason_from_link(text: str) -> str:
    """The reason written under the prefilled "Reason (optional):" line of
    an action link's email."""
    lines = strip_reply(text).strip().splitlines()
    if lines and leading(lines[0], "link", _PREFILLED)[0]:
        lines[0] = _UP_TO_COLON.sub("", lines[0], count=1)
    return "\n".join(lines).strip()
