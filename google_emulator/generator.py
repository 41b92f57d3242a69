"""Deterministic, realistic mailboxes and calendars: RFC 822 bytes, Gmail labels and events."""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

# ---------------------------------------------------------------------------------------------
# Result types


@dataclass(frozen=True)
class GeneratedMessage:
    """One message as Gmail stores it: the original bytes plus its labels and internal date."""

    raw: bytes
    label_ids: tuple[str, ...]
    internal_date_ms: int
    message_id: str
    kind: str = "note"
    charset: str = "utf-8"
    html_only: bool = False


@dataclass(frozen=True)
class GeneratedCalendar:
    """A calendar and its Calendar v3 event resources (recurring masters not expanded)."""

    id: str
    summary: str
    primary: bool
    time_zone: str
    events: list[dict]


@dataclass(frozen=True)
class Person:
    """A correspondent; `charset` is what their mail client writes."""

    name: str
    email: str
    company: str | None
    charset: str
    tz: str


@dataclass
class GeneratedMailbox:
    """Everything one Google account holds: mail, user labels, calendars and the people in it."""

    owner_email: str
    aliases: tuple[str, ...] = ()
    messages: list[GeneratedMessage] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    calendars: list[GeneratedCalendar] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Vocabulary

# (company, domain, time zone, locale); domains use the reserved .example TLD.
_COMPANIES = [
    ("Northwind Traders", "northwind.example", "America/New_York", "en"),
    ("Globex Corporation", "globex.example", "America/Chicago", "en"),
    ("Initech", "initech.example", "America/Los_Angeles", "en"),
    ("Umbrella Health", "umbrella-health.example", "Europe/London", "en"),
    ("Soylent Foods", "soylent.example", "America/Denver", "en"),
    ("Grupo Andaluz", "grupoandaluz.example", "Europe/Madrid", "es"),
    ("Cítricos del Sur", "citricos.example", "America/Mexico_City", "es"),
    ("Lefèvre & Fils", "lefevre.example", "Europe/Paris", "fr"),
    ("Société Générale de Logiciels", "sgl.example", "Europe/Paris", "fr"),
    ("Müller Maschinenbau", "mueller-mb.example", "Europe/Berlin", "de"),
    ("Nordlys Energi", "nordlys.example", "Europe/Oslo", "nordic"),
    ("Kowalski Logistics", "kowalski.example", "Europe/Warsaw", "pl"),
    ("Yamada Shoji", "yamada-shoji.example", "Asia/Tokyo", "ja"),
    ("Sakura Systems", "sakura-sys.example", "Asia/Tokyo", "ja"),
    ("Volga Analytics", "volga.example", "Europe/Moscow", "ru"),
]
_FREEMAIL = ["gmail.com", "outlook.com", "yahoo.co.jp"]

# (display form, ASCII form for the address) where the address cannot be derived by folding.
_GIVEN: dict[str, list[Any]] = {
    "en": ["James", "Emily", "Michael", "Sarah", "David", "Olivia", "Daniel", "Grace", "Ryan"],
    "es": ["José", "María", "Sofía", "Javier", "Lucía", "Andrés", "Begoña"],
    "fr": ["François", "Zoë", "Hélène", "Étienne", "Chloé", "Noël", "Anaïs"],
    "de": ["Jürgen", "Björn", "Lena", "Jörg", "Anneliese", "Uwe"],
    "nordic": ["Søren", "Åsa", "Ingrid", "Mette"],
    "pl": ["Łukasz", "Małgorzata", "Paweł", "Zofia"],
    "ja": [("太郎", "taro"), ("花子", "hanako"), ("健", "ken"), ("由美", "yumi"), ("翔", "sho")],
    "ru": [("Олег", "oleg"), ("Анна", "anna"), ("Дмитрий", "dmitry")],
}
_FAMILY: dict[str, list[Any]] = {
    "en": ["Smith", "Johnson", "Brown", "Taylor", "Doe", "O'Brien", "Walker", "Clark"],
    "es": ["García", "Martínez", "Núñez", "Fernández", "Peña", "López"],
    "fr": ["Dubois", "Lefèvre", "Moreau", "Bérénger", "Fauré"],
    "de": ["Müller", "Schäfer", "Groß", "Köhler", "Weiß"],
    "nordic": ["Ørsted", "Lindqvist", "Håkansson"],
    "pl": ["Wójcik", "Nowak", "Kowalczyk", "Dąbrowski"],
    "ja": [("山田", "yamada"), ("佐藤", "sato"), ("鈴木", "suzuki"), ("高橋", "takahashi")],
    "ru": [("Иванов", "ivanov"), ("Петрова", "petrova"), ("Смирнов", "smirnov")],
}
_ASCII_FOLD = str.maketrans({"ø": "o", "Ø": "O", "ß": "ss", "ł": "l", "Ł": "L", "æ": "ae", "'": ""})

_SUBJECTS = {
    "en": [
        "Q3 renewal",
        "Pilot proposal",
        "Pricing for {n} seats",
        "Follow-up from our call",
        "Contract redlines",
        "Onboarding schedule",
        "Security questionnaire",
        "Demo next week?",
        "Partnership opportunity",
        "Intro: {company} <> {owner_company}",
    ],
    "es": ["Propuesta económica", "Reunión del jueves", "Revisión del contrato"],
    "fr": ["Réunion de suivi", "Devis révisé pour {company}", "Question sur la facture"],
    "de": ["Angebot für {n} Lizenzen", "Rückfrage zum Vertrag", "Termin nächste Woche"],
    "nordic": ["Møte neste uke", "Oppfølging av tilbudet"],
    "pl": ["Oferta cenowa", "Spotkanie w przyszłym tygodniu"],
    "ja": ["お見積りの件", "打ち合わせ日程のご相談", "契約書について"],
    "ru": ["Встреча на следующей неделе", "Коммерческое предложение"],
}
_LINES = {
    "en": [
        "Thanks for the time today, it was great to walk through the roadmap together.",
        "Attaching the revised proposal; the main change is the {n}-month term.",
        "Could we move our sync to Thursday afternoon?",
        "Legal had a couple of comments on section 4, nothing blocking.",
        "Looping in my colleague who owns procurement on our side.",
        "Happy to set up a demo for the wider team if useful.",
    ],
    "es": ["Gracias por la reunión de ayer, fue muy útil.", "Te envío la propuesta económica."],
    "fr": ["Merci pour la réunion, voici le devis révisé.", "Pourriez-vous confirmer la date ?"],
    "de": [
        "Vielen Dank für das Gespräch, anbei das Angebot.",
        "Könnten wir den Termin verschieben?",
    ],
    "nordic": ["Takk for møtet i går.", "Vi ser frem til å høre fra dere."],
    "pl": ["Dziękuję za spotkanie, przesyłam ofertę.", "Czy możemy przełożyć rozmowę?"],
    "ja": [
        "お世話になっております。",
        "お見積書をお送りいたします。",
        "ご確認のほどよろしくお願いいたします。",
    ],
    "ru": ["Спасибо за встречу.", "Направляю коммерческое предложение."],
}
# windows-1252 mailers put typographic quotes, dashes and the euro sign in otherwise Latin text.
_WIN1252_LINE = (
    "Our \u201cstandard\u201d price is \u20ac{n}00 per seat \u2013 including support\u2026"
)
_NEWSLETTERS = [
    (
        "Acme Weekly",
        "newsletter@news.acme.example",
        "weekly.news.acme.example",
        "CATEGORY_PROMOTIONS",
    ),
    (
        "SaaS Insider",
        "hello@saasinsider.example",
        "digest.saasinsider.example",
        "CATEGORY_PROMOTIONS",
    ),
    (
        "Café Gourmet",
        "offers@cafe-gourmet.example",
        "offers.cafe-gourmet.example",
        "CATEGORY_PROMOTIONS",
    ),
    ("Conference 2025", "no-reply@events.example", "attendees.events.example", "CATEGORY_UPDATES"),
]
_NOTIFIERS = [
    ("Billing", "no-reply@billing.example", "Your receipt #{n}", "Label_2"),
    ("GitForge", "noreply@gitforge.example", "[crm] Pull request #{n} merged", None),
    ("Helpdesk", "support-noreply@helpdesk.example", "Ticket {n} has been updated", None),
]
_USER_LABELS = {"Label_1": "Clients", "Label_2": "Receipts"}

# A minimal valid PDF and a 1x1 PNG: real enough for MIME sniffing, tiny for speed.
_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]"
    b"/Count 1>>endobj\n3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)
_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
_ATTACHMENTS = [
    ("proposal.pdf", "application/pdf", _PDF),
    ("Résumé.pdf", "application/pdf", _PDF),
    ("見積書.pdf", "application/pdf", _PDF),
    ("logo.png", "image/png", _PNG),
]
_CRLF = "\r\n"
_BOUNDARY_POOL = 200


# ---------------------------------------------------------------------------------------------
# Header and body encoding (templated strings: the email package is too slow for 20k messages)


def _is_plain(text: str) -> bool:
    return text.isascii() and "=?" not in text


def encode_header_text(text: str, charset: str = "utf-8") -> str:
    """RFC 2047 encoded words for non-ASCII header text; ASCII passes through unchanged."""
    if _is_plain(text):
        return text
    if not _encodable(text, charset):
        charset = "utf-8"
    return f"{_CRLF} ".join(_encoded_word(chunk, charset) for chunk in _chunks(text, charset))


def _chunks(text: str, charset: str) -> list[str]:
    """Split so each encoded word stays under 75 characters; display names fit in one."""
    chunks, current = [], ""
    for char in text:
        if len((current + char).encode(charset)) > 36:
            chunks.append(current)
            current = ""
        current += char
    return [*chunks, current]


def _encoded_word(text: str, charset: str) -> str:
    data = text.encode(charset)
    if charset in ("iso-8859-1", "windows-1252"):
        return f"=?{charset.upper()}?Q?{_q_encode(data)}?="
    return f"=?{charset.upper()}?B?{base64.b64encode(data).decode()}?="


def _q_encode(data: bytes) -> str:
    safe = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!*+-/"
    return "".join(
        "_" if byte == 0x20 else chr(byte) if byte in safe else f"={byte:02X}" for byte in data
    )


def _encodable(text: str, charset: str) -> bool:
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        return False
    return True


def format_address(name: str, email: str, charset: str = "utf-8") -> str:
    """A header address: quoted when the name has specials ("Doe, John"), encoded when non-ASCII."""
    if not name:
        return email
    if not _is_plain(name):
        return f"{encode_header_text(name, charset)} <{email}>"
    if any(ch in name for ch in ',.;:@()<>[]"'):
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}" <{email}>'
    return f"{name} <{email}>"


def _text_part(text: str, subtype: str, charset: str, rng: random.Random) -> str:
    """A single text/* part (headers + encoded body) as a string."""
    text = text.replace("\r\n", "\n").replace("\n", _CRLF)
    if text.isascii():
        return _part_headers(f"text/{subtype}", "us-ascii", "7bit") + text
    if not _encodable(text, charset):
        charset = "utf-8"
    if charset == "iso-2022-jp":
        # A 7-bit charset: its bytes go on the wire as they are.
        return _part_headers(f"text/{subtype}", charset, "7bit") + text.encode(charset).decode()
    if charset == "utf-8" and rng.random() < 0.3:
        return _part_headers(f"text/{subtype}", charset, "8bit") + text
    if charset == "utf-8" and rng.random() < 0.5:
        body = base64.encodebytes(text.encode(charset)).decode().replace("\n", _CRLF)
        return _part_headers(f"text/{subtype}", charset, "base64") + body
    plain = text.replace(_CRLF, "\n").encode(charset)
    body = binascii.b2a_qp(plain).decode().replace("\n", _CRLF)
    return _part_headers(f"text/{subtype}", charset, "quoted-printable") + body


def _part_headers(content_type: str, charset: str, encoding: str) -> str:
    return (
        f'Content-Type: {content_type}; charset="{charset.upper()}"{_CRLF}'
        f"Content-Transfer-Encoding: {encoding}{_CRLF}{_CRLF}"
    )


def _attachment_part(filename: str, mime_type: str, data: bytes, charset: str) -> str:
    if filename.isascii():
        name_params = f'name="{filename}"', f'filename="{filename}"'
    elif charset == "iso-2022-jp" and _encodable(filename, charset):
        # What Japanese mailers really send: an RFC 2047 word inside the quoted parameter.
        encoded = _encoded_word(filename, charset)
        name_params = f'name="{encoded}"', f'filename="{encoded}"'
    else:
        encoded = quote(filename.encode("utf-8"), safe="")
        name_params = f"name*=UTF-8''{encoded}", f"filename*=UTF-8''{encoded}"
    body = base64.encodebytes(data).decode().replace("\n", _CRLF)
    return (
        f"Content-Type: {mime_type}; {name_params[0]}{_CRLF}"
        f"Content-Disposition: attachment; {name_params[1]}{_CRLF}"
        f"Content-Transfer-Encoding: base64{_CRLF}{_CRLF}{body}"
    )


def _multipart(subtype: str, parts: list[str], boundary: str) -> str:
    inner = "".join(f"--{boundary}{_CRLF}{part}{_CRLF}" for part in parts)
    return (
        f'Content-Type: multipart/{subtype}; boundary="{boundary}"{_CRLF}{_CRLF}'
        f"{inner}--{boundary}--{_CRLF}"
    )


def _html(text: str) -> str:
    paragraphs = "".join(
        f"<p>{line.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}</p>"
        for line in text.split("\n")
        if line.strip()
    )
    return f'<html><body><div dir="ltr">{paragraphs}</div></body></html>'


# ---------------------------------------------------------------------------------------------
# Single-message builder (also the test helper)


@dataclass
class _Draft:
    """Everything that varies between messages; rendered by `_render`."""

    sender: str
    to: list[str]
    subject: str
    text: str
    sent_at: datetime
    message_id: str
    charset: str = "utf-8"
    cc: list[str] = field(default_factory=list)
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    body_style: str = "plain"  # plain | alternative | html
    attachment: tuple[str, str, bytes] | None = None
    extra_headers: list[tuple[str, str]] = field(default_factory=list)


def _render(draft: _Draft, rng: random.Random) -> bytes:
    headers = list(draft.extra_headers)
    headers += [
        ("MIME-Version", "1.0"),
        ("Date", format_datetime(draft.sent_at)),
        ("Message-ID", draft.message_id),
    ]
    if draft.in_reply_to:
        headers.append(("In-Reply-To", draft.in_reply_to))
    if draft.references:
        headers.append(("References", f"{_CRLF} ".join(draft.references)))
    headers += [
        ("Subject", encode_header_text(draft.subject, draft.charset)),
        ("From", draft.sender),
        ("To", f",{_CRLF} ".join(draft.to)),
    ]
    if draft.cc:
        headers.append(("Cc", f",{_CRLF} ".join(draft.cc)))
    head = "".join(f"{name}: {value}{_CRLF}" for name, value in headers)
    return (head + _body(draft, rng)).encode("utf-8")


def _body(draft: _Draft, rng: random.Random) -> str:
    # Python's email parser compiles a regex per distinct boundary; a bounded pool keeps its
    # regex cache warm when 20k messages are parsed (a boundary need only be unique per message).
    boundary = f"000000000000{rng.randrange(_BOUNDARY_POOL) * 0x9E3779B1 & 0xFFFFFFFFFFFF:012x}"
    if draft.body_style == "html":
        content = _text_part(_html(draft.text), "html", draft.charset, rng)
    elif draft.body_style == "alternative":
        content = _multipart(
            "alternative",
            [
                _text_part(draft.text, "plain", draft.charset, rng),
                _text_part(_html(draft.text), "html", draft.charset, rng),
            ],
            boundary + "a",
        )
    else:
        content = _text_part(draft.text, "plain", draft.charset, rng)
    if draft.attachment is None:
        return content
    return _multipart(
        "mixed", [content, _attachment_part(*draft.attachment, draft.charset)], boundary
    )


def make_message(
    *,
    from_: str,
    to: str | Sequence[str],
    subject: str,
    body: str = "Hello.",
    date: datetime | None = None,
    labels: Sequence[str] = ("INBOX", "UNREAD"),
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    cc: Sequence[str] = (),
    message_id: str | None = None,
    html: bool = False,
    charset: str = "utf-8",
) -> GeneratedMessage:
    """Craft one message for a test; addresses are "Name <addr>" (the name may be non-ASCII)."""
    sent_at = date or datetime.now(UTC).replace(microsecond=0)
    if sent_at.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    rng = random.Random(f"{from_}|{subject}|{sent_at.isoformat()}")
    message_id = message_id or f"<{rng.getrandbits(96):024x}@{_domain_of(from_)}>"
    refs = list(references) or ([in_reply_to] if in_reply_to else [])
    draft = _Draft(
        sender=_reformat(from_, charset),
        to=[_reformat(addr, charset) for addr in ([to] if isinstance(to, str) else to)],
        cc=[_reformat(addr, charset) for addr in cc],
        subject=subject,
        text=body,
        sent_at=sent_at,
        message_id=message_id,
        charset=charset,
        in_reply_to=in_reply_to,
        references=refs,
        body_style="html" if html else "plain",
    )
    return GeneratedMessage(
        raw=_render(draft, rng),
        label_ids=tuple(labels),
        internal_date_ms=int(sent_at.timestamp() * 1000),
        message_id=message_id,
        charset=charset,
        html_only=html,
    )


def _reformat(address: str, charset: str) -> str:
    name, email = parseaddr(address)
    return format_address(name, email or address, charset)


def _domain_of(address: str) -> str:
    return (parseaddr(address)[1] or address).rpartition("@")[2] or "localhost"


# ---------------------------------------------------------------------------------------------
# People


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII_FOLD))
    return "".join(ch for ch in decomposed if ch.isascii() and ch.isalnum()).lower()


def _pick_name(rng: random.Random, locale: str) -> tuple[str, str, str]:
    """(display name, ascii given, ascii family) in the locale's own order."""
    given, family = rng.choice(_GIVEN[locale]), rng.choice(_FAMILY[locale])
    if locale == "ja":
        return f"{family[0]} {given[0]}", given[1], family[1]
    if locale == "ru":
        return f"{given[0]} {family[0]}", given[1], family[1]
    return f"{given} {family}", _fold(given), _fold(family)


def _charset_for(rng: random.Random, locale: str) -> str:
    roll = rng.random()
    if locale == "ja":
        return "iso-2022-jp" if roll < 0.7 else "utf-8"
    if locale in ("fr", "es", "de"):
        return "iso-8859-1" if roll < 0.35 else "windows-1252" if roll < 0.6 else "utf-8"
    return "utf-8"


def _make_people(rng: random.Random, count: int, owner_email: str) -> list[Person]:
    people: dict[str, Person] = {}
    while len(people) < count:
        company: str | None
        company, domain, tz, locale = rng.choice(_COMPANIES)
        display, given, family = _pick_name(rng, locale)
        if rng.random() < 0.08:
            company, domain = None, rng.choice(_FREEMAIL)
        local = rng.choice([f"{given}.{family}", f"{given[0]}{family}", given])
        email = f"{local}@{domain}"
        if email == owner_email or email in people:
            continue
        if locale in ("en", "de") and rng.random() < 0.15:
            display = f"{display.split(' ', 1)[1]}, {display.split(' ', 1)[0]}"
        people[email] = Person(display, email, company, _charset_for(rng, locale), tz)
    return list(people.values())


def _owner_name(owner_email: str) -> str:
    local = owner_email.partition("@")[0]
    return " ".join(part.capitalize() for part in local.replace("_", ".").split(".") if part)


# ---------------------------------------------------------------------------------------------
# Mailbox generation


@dataclass
class _Context:
    rng: random.Random
    owner_email: str
    owner_name: str
    senders: list[str]
    people: list[Person]
    start: datetime
    now: datetime
    counter: int = 0

    def next_id(self, domain: str) -> str:
        self.counter += 1
        return f"<{self.rng.getrandbits(64):016x}.{self.counter}@{domain}>"

    def gmail_id(self) -> str:
        token = base64.urlsafe_b64encode(self.rng.randbytes(30)).decode().rstrip("=")
        return f"<CA{token}@mail.gmail.com>"

    def random_time(self) -> datetime:
        span = (self.now - self.start).total_seconds()
        return self.start + timedelta(seconds=int(self.rng.random() * span * 0.98))


def generate_mailbox(
    owner_email: str,
    *,
    messages: int,
    events: int = 40,
    seed: int = 0,
    now: datetime | None = None,
    days: int = 60,
    aliases: Sequence[str] = (),
) -> GeneratedMailbox:
    """A mailbox of exactly `messages` messages over the last `days` days, plus calendars.

    Deterministic for a given (seed, now); `now` defaults to the current minute.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(second=0, microsecond=0)
    rng = random.Random(seed)
    people = _make_people(rng, min(200, max(50, messages // 25)), owner_email)
    ctx = _Context(
        rng=rng,
        owner_email=owner_email,
        owner_name=_owner_name(owner_email),
        senders=[owner_email, *aliases],
        people=people,
        start=now - timedelta(days=days),
        now=now,
    )
    generated: list[GeneratedMessage] = []
    while len(generated) < messages:
        generated += _next_unit(ctx, messages - len(generated))
    generated.sort(key=lambda message: message.internal_date_ms)
    return GeneratedMailbox(
        owner_email=owner_email,
        aliases=tuple(aliases),
        messages=generated,
        labels=dict(_USER_LABELS),
        calendars=_calendars(ctx, events),
        people=people,
    )


def _next_unit(ctx: _Context, remaining: int) -> list[GeneratedMessage]:
    roll = ctx.rng.random()
    if roll < 0.45:
        return _thread(ctx, min(remaining, ctx.rng.choice([1, 2, 2, 3, 3, 4, 5, 6])))
    if roll < 0.72:
        return [_newsletter(ctx)]
    if roll < 0.91:
        return [_notification(ctx)]
    if roll < 0.95:
        return [_spam(ctx)]
    if roll < 0.98:
        return [_single(ctx, "TRASH")]
    return [_single(ctx, "DRAFT")]


def _pick_contact(ctx: _Context) -> Person:
    return ctx.rng.choice(ctx.people)


def _colleagues(ctx: _Context, person: Person) -> list[Person]:
    same = [p for p in ctx.people if p.company and p.company == person.company and p != person]
    return ctx.rng.sample(same, min(len(same), ctx.rng.randint(1, 3)))


def _subject(ctx: _Context, person: Person) -> str:
    locale = _locale_of(person)
    template = ctx.rng.choice(_SUBJECTS[locale])
    return template.format(
        n=ctx.rng.randint(5, 500), company=person.company or "you", owner_company="Pipeline"
    )


def _locale_of(person: Person) -> str:
    for _, domain, _, locale in _COMPANIES:
        if person.email.endswith("@" + domain):
            return locale
    return "en"


def _text(ctx: _Context, person: Person, signer: str, lines: int = 2) -> str:
    locale = _locale_of(person) if signer == person.name else "en"
    chosen = ctx.rng.sample(_LINES[locale], min(lines, len(_LINES[locale])))
    if person.charset == "windows-1252" and signer == person.name:
        chosen.append(_WIN1252_LINE)
    greeting = "Hi," if locale == "en" else ""
    body = "\n\n".join(line.format(n=ctx.rng.randint(2, 36)) for line in chosen)
    return f"{greeting}\n\n{body}\n\n{signer}\n".lstrip("\n")


def _body_style(ctx: _Context) -> str:
    roll = ctx.rng.random()
    return "alternative" if roll < 0.45 else "html" if roll < 0.55 else "plain"


def _thread(ctx: _Context, length: int) -> list[GeneratedMessage]:
    contact = _pick_contact(ctx)
    cc = _colleagues(ctx, contact) if ctx.rng.random() < 0.25 else []
    subject = _subject(ctx, contact)
    inbound = ctx.rng.random() < 0.6
    sent_at = ctx.random_time()
    refs: list[str] = []
    thread: list[GeneratedMessage] = []
    quoted = ""
    for index in range(length):
        text = _text(ctx, contact, contact.name if inbound else ctx.owner_name)
        message = _thread_message(
            ctx,
            contact,
            cc,
            f"{'Re: ' if index else ''}{subject}",
            inbound,
            sent_at,
            refs,
            text + quoted,
        )
        thread.append(message)
        refs.append(message.message_id)
        quoted = _quote(text, sent_at, contact, inbound, ctx)
        inbound = not inbound
        sent_at = min(ctx.now, sent_at + timedelta(minutes=ctx.rng.randint(7, 2 * 24 * 60)))
    return thread


def _thread_message(
    ctx: _Context,
    contact: Person,
    cc: list[Person],
    subject: str,
    inbound: bool,
    sent_at: datetime,
    refs: list[str],
    text: str,
) -> GeneratedMessage:
    owner = format_address(ctx.owner_name, ctx.rng.choice(ctx.senders))
    them = format_address(contact.name, contact.email, contact.charset)
    charset = contact.charset if inbound else "utf-8"
    tz = ZoneInfo(contact.tz) if inbound else UTC
    draft = _Draft(
        sender=them if inbound else owner,
        to=[owner if inbound else them],
        cc=[format_address(p.name, p.email, p.charset) for p in cc],
        subject=subject,
        text=text,
        sent_at=sent_at.astimezone(tz),
        message_id=ctx.next_id("mail." + contact.email.partition("@")[2])
        if inbound
        else ctx.gmail_id(),
        charset=charset,
        in_reply_to=refs[-1] if refs else None,
        references=list(refs),
        body_style=_body_style(ctx),
        attachment=ctx.rng.choice(_ATTACHMENTS) if ctx.rng.random() < 0.1 else None,
    )
    if inbound:
        draft.extra_headers = _received_headers(ctx, contact.email, sent_at)
        return _finish(
            ctx, draft, _inbound_labels(ctx, sent_at), "thread", delay_s=ctx.rng.randint(2, 40)
        )
    return _finish(ctx, draft, ("SENT",), "thread")


def _quote(text: str, sent_at: datetime, contact: Person, inbound: bool, ctx: _Context) -> str:
    who = (
        f"{contact.name} <{contact.email}>" if inbound else f"{ctx.owner_name} <{ctx.owner_email}>"
    )
    when = sent_at.strftime("%a, %d %b %Y at %H:%M")
    quoted = "".join(f"> {line}\n" if line else ">\n" for line in text.rstrip("\n").split("\n"))
    return f"\nOn {when}, {who} wrote:\n{quoted}"


def _inbound_labels(ctx: _Context, sent_at: datetime) -> tuple[str, ...]:
    labels = ["CATEGORY_PERSONAL"]
    recent = ctx.now - sent_at < timedelta(days=14)
    if recent or ctx.rng.random() < 0.6:
        labels.append("INBOX")
    if recent and ctx.rng.random() < 0.4:
        labels.append("UNREAD")
    if ctx.rng.random() < 0.4:
        labels.append("IMPORTANT")
    if ctx.rng.random() < 0.05:
        labels.append("STARRED")
    if ctx.rng.random() < 0.2:
        labels.append("Label_1")
    return tuple(labels)


def _received_headers(ctx: _Context, sender: str, sent_at: datetime) -> list[tuple[str, str]]:
    domain = sender.partition("@")[2]
    return [
        ("Delivered-To", ctx.owner_email),
        (
            "Received",
            f"from mail.{domain} (mail.{domain}. [203.0.113.{ctx.rng.randint(1, 254)}]){_CRLF}"
            f"        by mx.google.com with ESMTPS id {ctx.rng.getrandbits(48):012x}{_CRLF}"
            f"        for <{ctx.owner_email}>; {format_datetime(sent_at.astimezone(UTC))}",
        ),
    ]


def _finish(
    ctx: _Context, draft: _Draft, labels: Sequence[str], kind: str, delay_s: int = 0
) -> GeneratedMessage:
    received = min(draft.sent_at + timedelta(seconds=delay_s), ctx.now)
    return GeneratedMessage(
        raw=_render(draft, ctx.rng),
        label_ids=tuple(labels),
        internal_date_ms=int(received.timestamp()) * 1000,
        message_id=draft.message_id,
        kind=kind,
        charset=_effective_charset(draft.text, draft.charset),
        html_only=draft.body_style == "html",
    )


def _effective_charset(text: str, charset: str) -> str:
    if text.isascii():
        return "us-ascii"
    return charset if _encodable(text, charset) else "utf-8"


def _newsletter(ctx: _Context) -> GeneratedMessage:
    name, address, list_id, category = ctx.rng.choice(_NEWSLETTERS)
    sent_at = ctx.random_time()
    domain = address.partition("@")[2]
    issue = ctx.rng.randint(100, 999)
    draft = _Draft(
        sender=format_address(name, address),
        to=[ctx.owner_email],
        subject=f"{name} #{issue}: what's new this week",
        text=f"Issue {issue}\nTop stories from the {name} team.\nUnsubscribe anytime.",
        sent_at=sent_at,
        message_id=ctx.next_id(domain),
        body_style="html" if ctx.rng.random() < 0.6 else "alternative",
        extra_headers=[
            *_received_headers(ctx, address, sent_at),
            ("List-Id", f"{name} <{list_id}>"),
            (
                "List-Unsubscribe",
                f"<mailto:unsubscribe@{domain}?subject=unsubscribe>, <https://{domain}/u/{issue}>",
            ),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("Precedence", "bulk"),
        ],
    )
    labels = ["INBOX", category] + (["UNREAD"] if ctx.rng.random() < 0.7 else [])
    return _finish(ctx, draft, labels, "newsletter", delay_s=5)


def _notification(ctx: _Context) -> GeneratedMessage:
    name, address, subject, label = ctx.rng.choice(_NOTIFIERS)
    sent_at = ctx.random_time()
    number = ctx.rng.randint(1000, 9999)
    draft = _Draft(
        sender=format_address(name, address),
        to=[ctx.owner_email],
        subject=subject.format(n=number),
        text=f"This is an automated message ({number}). Please do not reply.",
        sent_at=sent_at,
        message_id=ctx.next_id(address.partition("@")[2]),
        body_style=_body_style(ctx),
        extra_headers=[
            ("Auto-Submitted", "auto-generated"),
            *_received_headers(ctx, address, sent_at),
        ],
    )
    labels = ["INBOX", "CATEGORY_UPDATES"] + ([label] if label else [])
    return _finish(ctx, draft, labels, "notification", delay_s=3)


def _spam(ctx: _Context) -> GeneratedMessage:
    sent_at = ctx.random_time()
    draft = _Draft(
        sender=format_address("Prize Department", "winner@lucky-prize.example"),
        to=[ctx.owner_email],
        subject="You have WON a $1000 gift card!!!",
        text="Click here to claim your prize.",
        sent_at=sent_at,
        message_id=ctx.next_id("lucky-prize.example"),
        body_style="html",
    )
    return _finish(ctx, draft, ("SPAM", "UNREAD"), "spam", delay_s=1)


def _single(ctx: _Context, label: str) -> GeneratedMessage:
    contact = _pick_contact(ctx)
    sent_at = ctx.random_time()
    owner = format_address(ctx.owner_name, ctx.owner_email)
    them = format_address(contact.name, contact.email, contact.charset)
    drafted = label == "DRAFT"
    draft = _Draft(
        sender=owner if drafted else them,
        to=[them if drafted else owner],
        subject=_subject(ctx, contact),
        text=_text(ctx, contact, ctx.owner_name if drafted else contact.name),
        sent_at=sent_at if drafted else sent_at.astimezone(ZoneInfo(contact.tz)),
        message_id=ctx.gmail_id() if drafted else ctx.next_id(contact.email.partition("@")[2]),
        charset="utf-8" if drafted else contact.charset,
    )
    return _finish(ctx, draft, (label,), label.lower())


# ---------------------------------------------------------------------------------------------
# Calendars

_BASE32HEX = "0123456789abcdefghijklmnopqrstuv"
_EVENT_TITLES = [
    "Discovery call",
    "Pricing review",
    "Quarterly business review",
    "Onboarding kickoff",
    "Contract walkthrough",
    "Lunch",
    "Réunion de suivi",
    "打ち合わせ",
]
_RESPONSES = ["accepted", "accepted", "tentative", "declined", "needsAction"]


def _event_id(rng: random.Random) -> str:
    return "".join(rng.choice(_BASE32HEX) for _ in range(26))


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _calendars(ctx: _Context, count: int) -> list[GeneratedCalendar]:
    digest = hashlib.sha1(ctx.owner_email.encode()).hexdigest()[:20]
    primary = GeneratedCalendar(ctx.owner_email, ctx.owner_email, True, "America/New_York", [])
    shared = GeneratedCalendar(
        f"c_{digest}@group.calendar.google.com", "Sales team", False, "Europe/London", []
    )
    for _ in range(count):
        calendar = shared if ctx.rng.random() < 0.2 else primary
        calendar.events.extend(_events(ctx, calendar))
    return [primary, shared]


def _events(ctx: _Context, calendar: GeneratedCalendar) -> list[dict]:
    """One event, or a recurring master plus its exceptions."""
    roll = ctx.rng.random()
    if roll < 0.12:
        return [_all_day(ctx, calendar, days=1)]
    if roll < 0.18:
        return [_all_day(ctx, calendar, days=ctx.rng.randint(2, 4))]
    if roll < 0.3:
        return _recurring(ctx, calendar)
    event = _meeting(ctx, calendar)
    if roll < 0.36:
        return [_cancelled_stub(event)]
    return [event]


def _base_event(ctx: _Context, calendar: GeneratedCalendar, summary: str) -> dict:
    event_id = _event_id(ctx.rng)
    created = ctx.random_time()
    organizer_self = ctx.rng.random() < 0.6
    organizer = (
        {"email": calendar.id, "self": True}
        if organizer_self
        else {"email": (person := _pick_contact(ctx)).email, "displayName": person.name}
    )
    eid = base64.b64encode(f"{event_id} {calendar.id}".encode()).decode().rstrip("=")
    return {
        "kind": "calendar#event",
        "etag": f'"{3_400_000_000_000_000 + ctx.rng.getrandbits(40)}"',
        "id": event_id,
        "status": "confirmed",
        "htmlLink": f"https://www.google.com/calendar/event?eid={eid}",
        "created": _rfc3339(created),
        "updated": _rfc3339(created + timedelta(minutes=5)),
        "summary": summary,
        "creator": organizer,
        "organizer": organizer,
        "iCalUID": f"{event_id}@google.com",
        "sequence": 0,
        "reminders": {"useDefault": True},
        "eventType": "default",
    }


def _attendees(ctx: _Context, calendar: GeneratedCalendar, organizer: dict) -> list[dict]:
    owner: dict[str, Any] = {"email": ctx.owner_email, "self": True, "responseStatus": "accepted"}
    if not organizer.get("self"):
        owner["responseStatus"] = ctx.rng.choice(_RESPONSES)
    guests: list[dict[str, Any]] = [
        {"email": p.email, "displayName": p.name, "responseStatus": ctx.rng.choice(_RESPONSES)}
        for p in ctx.rng.sample(ctx.people, ctx.rng.randint(1, 4))
    ]
    if organizer.get("self"):
        owner["organizer"] = True
    else:
        guests.append({**organizer, "organizer": True, "responseStatus": "accepted"})
    return [owner, *guests]


def _meeting(ctx: _Context, calendar: GeneratedCalendar) -> dict:
    event = _base_event(ctx, calendar, ctx.rng.choice(_EVENT_TITLES))
    tz_name = ctx.rng.choice(
        ["America/New_York", "Europe/Berlin", "Asia/Tokyo", calendar.time_zone]
    )
    tz = ZoneInfo(tz_name)
    day = (ctx.random_time() + timedelta(days=ctx.rng.randint(0, 30))).astimezone(tz)
    start = day.replace(hour=ctx.rng.randint(8, 17), minute=ctx.rng.choice([0, 30]), second=0)
    end = start + timedelta(minutes=ctx.rng.choice([30, 45, 60, 90]))
    event["start"] = {"dateTime": start.isoformat(), "timeZone": tz_name}
    event["end"] = {"dateTime": end.isoformat(), "timeZone": tz_name}
    event["attendees"] = _attendees(ctx, calendar, event["organizer"])
    if ctx.rng.random() < 0.5:
        _add_meet(ctx, event)
    else:
        event["location"] = ctx.rng.choice(["Room 4.01", "Café Central, Wien", "東京オフィス"])
    return event


def _add_meet(ctx: _Context, event: dict) -> None:
    letters = "abcdefghijklmnopqrstuvwxyz"
    code = "-".join("".join(ctx.rng.choice(letters) for _ in range(n)) for n in (3, 4, 3))
    event["hangoutLink"] = f"https://meet.google.com/{code}"
    event["conferenceData"] = {
        "entryPoints": [
            {
                "entryPointType": "video",
                "uri": f"https://meet.google.com/{code}",
                "label": f"meet.google.com/{code}",
            }
        ],
        "conferenceSolution": {"key": {"type": "hangoutsMeet"}, "name": "Google Meet"},
        "conferenceId": code,
    }


def _all_day(ctx: _Context, calendar: GeneratedCalendar, days: int) -> dict:
    title = (
        "Offsite"
        if days > 1
        else ctx.rng.choice(["Public holiday", "Conference day", "Out of office"])
    )
    event = _base_event(ctx, calendar, title)
    first = (ctx.random_time() + timedelta(days=ctx.rng.randint(0, 30))).date()
    event["start"] = {"date": first.isoformat()}
    event["end"] = {"date": (first + timedelta(days=days)).isoformat()}
    event["transparency"] = "transparent"
    return event


def _recurring(ctx: _Context, calendar: GeneratedCalendar) -> list[dict]:
    master = _meeting(ctx, calendar)
    master["summary"] = "Weekly pipeline sync"
    count = ctx.rng.randint(4, 12)
    start = datetime.fromisoformat(master["start"]["dateTime"])
    weekday = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"][start.weekday()]
    master["recurrence"] = [f"RRULE:FREQ=WEEKLY;COUNT={count};BYDAY={weekday}"]
    tz_name = master["start"]["timeZone"]
    moved_from = start + timedelta(weeks=1)
    moved = _exception(master, moved_from, tz_name)
    moved["start"] = {
        "dateTime": (moved_from + timedelta(hours=2)).isoformat(),
        "timeZone": tz_name,
    }
    moved["end"] = {
        "dateTime": (
            datetime.fromisoformat(master["end"]["dateTime"]) + timedelta(weeks=1, hours=2)
        ).isoformat(),
        "timeZone": tz_name,
    }
    cancelled = _cancelled_stub(_exception(master, start + timedelta(weeks=2), tz_name))
    return [master, moved, cancelled]


def _exception(master: dict, original_start: datetime, tz_name: str) -> dict:
    """A modified instance of a recurring event, keyed by the start it replaces."""
    exception = {key: value for key, value in master.items() if key != "recurrence"}
    exception["id"] = f"{master['id']}_{original_start.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    exception["recurringEventId"] = master["id"]
    exception["originalStartTime"] = {"dateTime": original_start.isoformat(), "timeZone": tz_name}
    return exception


def _cancelled_stub(event: dict) -> dict:
    """What Google keeps of a deleted event: identity only (plus the instance it cancels)."""
    keep = ("kind", "etag", "id", "recurringEventId", "originalStartTime", "updated")
    return {**{key: event[key] for key in keep if key in event}, "status": "cancelled"}
