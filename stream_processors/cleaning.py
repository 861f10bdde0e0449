"""Pure, faust-free cleaning and validation of raw text records.

The stream worker, Spark jobs and the API all need the same answer to "is this text
usable, and what does it look like cleaned?", so the rules live here as plain
functions with no Kafka, Faust or Redis imports. :func:`clean_record` turns one raw
record (:data:`schemas.events.RawText`) into either a :class:`CleanPost` or a
:class:`Rejection` that names a dead-letter reason; it never raises on bad content.

Order matters: PII is masked and URLs removed before measuring length, coins are
tagged before case normalisation (the tagger uses case to tell ``SOL`` from "sol"),
and the language is detected on text stripped of tickers, numbers and emoji.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from pydantic import ValidationError

from schemas.events import (
    CleanPost,
    NewsArticle,
    QualityFlag,
    RawText,
    RedditComment,
    RedditPost,
    Source,
    content_hash,
    parse_raw_text,
)
from scoring.coins import ASCII_LETTER_RE, letter_counts

# --- dead-letter reasons (DeadLetter.reason pattern: ^[a-z][a-z0-9_]{1,63}$) -------------
REASON_MALFORMED_JSON = "malformed_json"
REASON_INVALID_SCHEMA = "invalid_schema"
REASON_EMPTY_TEXT = "empty_text"
REASON_TOO_SHORT = "too_short"
REASON_NON_ENGLISH = "non_english"
REASON_UNKNOWN_COIN = "unknown_coin"
REASON_DUPLICATE_ID = "duplicate_source_id"
REASON_DUPLICATE_CONTENT = "duplicate_content"
REASON_SCORING_FAILED = "scoring_failed"
REASON_UNHANDLED_ERROR = "unhandled_error"  # any other exception while handling one record

REDDIT_PLACEHOLDERS = frozenset({"[removed]", "[deleted]", "[ Removed by Reddit ]", "[removed by reddit]"})

_URL_RE = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>\"'\])]+", re.IGNORECASE)
_MD_LINK_RE = re.compile(r"\[([^\]\n]{0,300})\]\((?:https?://|/)[^)\s]*\)")
_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>\n]{0,200})?/?>")
_EMAIL_RE = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# International or North-American-ish phone numbers: 9+ digits with separators, not prices/years.
_PHONE_RE = re.compile(
    r"(?<![\w$.,+])(?:"
    r"\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]?\d{2,4}){1,4}"  # +44 20 7946 0958
    r"|\(\d{3}\)[\s.-]?\d{3}[\s.-]\d{4}"  # (415) 555-2671
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 415-555-2671
    r")(?![\w%])"
)
_WS_RE = re.compile(r"\s+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0/C1 controls, NUL included (JSON allows \u0000)
_SHOUT_WORD_RE = re.compile(r"\b[A-Z]{4,}\b")
_CASHTAG_RE = re.compile(r"(?<![A-Za-z0-9_])\$([A-Za-z][A-Za-z0-9]{1,9})\b")
_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)
_DETECT_STRIP_RE = re.compile(r"\$[A-Za-z0-9]+|\b[A-Z]{2,6}\b|\d+[\w.,%]*|[#@]\w+")

PUMP_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\bto the moon\b",
        r"\b\d{2,5}\s?x\b(?!\w)",
        r"\bx\d{2,5}\b",
        r"\bbuy (?:now|before|it now)\b",
        r"\bdon'?t miss\b",
        r"\bguarantee[ds]?\b.{0,20}\b(?:profit|gain|return)s?\b",
        r"\bnext (?:100x|1000x|gem|big thing)\b",
        r"\bpre-?sale\b",
        r"\bjoin (?:my|our|the) (?:telegram|discord|group|channel)\b",
        r"\bget in early\b",
        r"\bpump (?:it|signal|group)\b",
        r"\bmoonshot\b",
        r"\blast chance\b",
        r"\bfree (?:airdrop|crypto|tokens?)\b",
    )
)

_PUMP_RE = re.compile("|".join(f"(?:{p.pattern})" for p in PUMP_PATTERNS), re.IGNORECASE)
"""All of ``PUMP_PATTERNS`` in one pass over the text instead of fourteen."""


class TextTagger(Protocol):
    """Anything with the coin catalog's ``tag`` method (scoring.coins.CoinCatalog)."""

    def tag(self, text: str) -> list[str]: ...


@dataclass(frozen=True)
class CleaningConfig:
    """The knobs of :func:`clean_record`, taken from settings by :meth:`from_settings`."""

    author_salt: str
    min_chars: int = 10
    max_chars: int = 1000
    short_text_chars: int = 30
    require_coin: bool = False
    languages: tuple[str, ...] = ("en", "es", "de", "fr", "pt", "it", "nl", "tr", "ru", "id")

    @classmethod
    def from_settings(cls, settings: Any) -> CleaningConfig:
        from core.secrets import persistent_secret

        stream = settings.stream
        salt = (
            stream.author_salt.get_secret_value()
            if stream.author_salt is not None
            else persistent_secret(settings.home / "secrets" / "author_salt")
        )
        return cls(
            author_salt=salt,
            min_chars=stream.min_text_chars,
            max_chars=settings.model.max_text_chars,
            short_text_chars=stream.short_text_chars,
            require_coin=stream.require_coin,
            languages=tuple(stream.languages),
        )


@dataclass(frozen=True)
class Rejection:
    """Why a record cannot become a CleanPost; ``reason`` is the dead-letter reason."""

    reason: str
    detail: str
    source_id: str | None = None


@dataclass
class CleanedText:
    """Result of :func:`clean_text`: the text plus what was done to it."""

    text: str
    original_length: int
    cased: str = ""  # same text before case normalisation, for the coin tagger
    flags: list[QualityFlag] = field(default_factory=list)
    had_urls: bool = False


# --- individual steps ------------------------------------------------------------------


def extract_text(record: RawText) -> str:
    """The text a record is judged by: title and body joined, Reddit placeholders dropped."""
    if isinstance(record, RedditPost):
        parts = [record.title, record.selftext]
    elif isinstance(record, RedditComment):
        parts = [record.body]
    elif isinstance(record, NewsArticle):
        parts = [record.title, record.summary]
    else:  # pragma: no cover - RawText is closed
        raise TypeError(f"not a raw text record: {type(record).__name__}")
    kept = [p.strip() for p in parts if p and p.strip() and p.strip() not in REDDIT_PLACEHOLDERS]
    if isinstance(record, NewsArticle) and len(kept) == 2 and kept[1].startswith(kept[0]):
        kept = kept[1:]  # feeds often repeat the title as the summary's first sentence
    return "\n".join(kept)


def unescape_html(text: str) -> str:
    """Undo (double) HTML escaping and drop tags; feeds and Reddit both escape."""
    for _ in range(3):
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    return _TAG_RE.sub(" ", text)


def remove_urls(text: str) -> tuple[str, int]:
    """Replace markdown links by their label and drop bare URLs; return the URL characters removed."""
    removed = 0

    def _md(match: re.Match[str]) -> str:
        nonlocal removed
        removed += len(match.group(0)) - len(match.group(1))
        return match.group(1)

    text = _MD_LINK_RE.sub(_md, text)

    def _bare(match: re.Match[str]) -> str:
        nonlocal removed
        removed += len(match.group(0))
        return " "

    return _URL_RE.sub(_bare, text), removed


def mask_pii(text: str) -> tuple[str, bool]:
    """Mask e-mail addresses and phone numbers; True when anything was masked."""
    masked = _EMAIL_RE.sub("[email]", text)
    masked = _PHONE_RE.sub(_mask_phone, masked)
    return masked, masked != text


def _mask_phone(match: re.Match[str]) -> str:
    digits = sum(ch.isdigit() for ch in match.group(0))
    return "[phone]" if 9 <= digits <= 15 else match.group(0)


def normalize_whitespace(text: str) -> str:
    return _WS_RE.sub(" ", text).strip()


def normalize_case(text: str, keep: Sequence[str] = ()) -> str:
    """Lower-case shouted words (4+ capitals), keeping tickers the catalog knows.

    Full lower-casing would destroy the case cues the coin tagger and the models
    use; only SHOUTING is normalised so "THIS IS HUGE" and "this is huge" read alike.
    """
    keep_set = {k.upper() for k in keep}
    return _SHOUT_WORD_RE.sub(lambda m: m.group(0) if m.group(0) in keep_set else m.group(0).lower(), text)


def hash_author(author: str | None, salt: str) -> str | None:
    """Salted SHA-256 of the author name (32 hex chars); None for deleted or absent authors."""
    if not author or author.strip() in ("[deleted]", "[removed]"):
        return None
    return hashlib.sha256(f"{salt}\x00{author.strip().lower()}".encode()).hexdigest()[:32]


def truncate(text: str, max_chars: int) -> str:
    """Cut at the last word boundary before ``max_chars`` (hard cut if there is none)."""
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars + 1]
    space = cut.rfind(" ", max_chars // 2)
    return (cut[:space] if space > 0 else cut[:max_chars]).rstrip()


def _is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x1F000 <= cp <= 0x1FAFF
        or 0x2600 <= cp <= 0x27BF
        or 0x2B00 <= cp <= 0x2BFF
        or unicodedata.category(ch) == "So"
    )


_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]")


def emoji_count(text: str) -> int:
    """Emoji and other pictographs in ``text`` (no ASCII character is one)."""
    return sum(_is_emoji(ch) for ch in _NON_ASCII_RE.findall(text))


def spam_flags(text: str, *, url_chars: int, original_length: int) -> list[QualityFlag]:
    """Bot/spam signals; they flag, never reject, so analysts can filter downstream."""
    flags: list[QualityFlag] = []
    words = [w.lower() for w in _WORD_RE.findall(text)]
    if words:
        longest_run, run = 1, 1
        for prev, cur in itertools.pairwise(words):
            run = run + 1 if cur == prev else 1
            longest_run = max(longest_run, run)
        distinct_ratio = len(set(words)) / len(words)
        if longest_run >= 4 or (len(words) >= 8 and distinct_ratio < 0.35):
            flags.append(QualityFlag.REPEATED_TEXT)
    if original_length and url_chars / original_length > 0.5:
        flags.append(QualityFlag.LINK_ONLY)
    if _PUMP_RE.search(text) or text.count("🚀") >= 3:
        flags.append(QualityFlag.PUMP_AND_DUMP)
    letters, upper = letter_counts(text)
    if letters >= 10 and upper / letters > 0.6:
        flags.append(QualityFlag.EXCESSIVE_CAPS)
    emoji = emoji_count(text)
    if emoji >= 8 or (emoji >= 3 and emoji / max(len(text), 1) > 0.2):
        flags.append(QualityFlag.EXCESSIVE_EMOJI)
    return flags


def clean_text(raw: str, *, max_chars: int = 1000, keep_upper: Sequence[str] = ()) -> CleanedText:
    """Unescape, strip URLs, mask PII, normalise unicode/whitespace/case, truncate."""
    original_length = len(raw)
    text = unicodedata.normalize("NFKC", unescape_html(raw))  # NFKC keeps emoji, folds 𝐟𝐚𝐧𝐜𝐲 fonts
    text = _CONTROL_RE.sub(" ", text)
    text, url_chars = remove_urls(text)
    text, pii = mask_pii(text)
    text = normalize_whitespace(text)
    flags = spam_flags(text, url_chars=url_chars, original_length=max(original_length, 1))
    if pii:
        flags.append(QualityFlag.PII_MASKED)
    if len(text) > max_chars:
        text = truncate(text, max_chars)
        flags.append(QualityFlag.TRUNCATED)
    return CleanedText(
        text=normalize_case(text, keep_upper),  # A-Z only: same length, so ``cased`` aligns
        original_length=original_length,
        cased=text,
        flags=flags,
        had_urls=url_chars > 0,
    )


# --- language ---------------------------------------------------------------------------


ENGLISH_ONLY_WORDS = frozenset(
    """
    the and this that with you your have has not from they their them what about would could
    should which there these those because really why how when where who does doesn't don't
    didn't isn't aren't wasn't it's i'm i've you're that's there's can't won't than then some
    any only she his him hers its it are were my our us if into
    """.split()  # noqa: SIM905 (a word list reads better as words)
)
"""Common English words that are not words of the other languages the cleaner tells apart."""

ENGLISH_SHARED_WORDS = frozenset(
    """
    to of in on for is a at by be will was as an or up so no do all new now over after but
    more most out off he we her had been just
    """.split()  # noqa: SIM905 (a word list reads better as words)
)
"""Common English words that other languages of the cleaner use too (``was`` and ``will`` in
German, ``is``, ``of`` and ``we`` in Dutch, ``on`` in French, ``a`` and ``he`` in Spanish...): they
count towards the share of English words, never alone."""

_ASCII_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?")


def looks_english(probe: str) -> bool:
    """A cheap pre-check before the n-gram detector: ASCII text with an English-only word,
    in which common English words make at least a quarter of the words, is English.

    It only ever accepts, so an English text it misses still gets lingua's verdict (lingua
    costs ~0.15 ms a text in a busy worker, where its n-gram tables miss the CPU caches).
    Measured on the shipped sets and on foreign sentences: docs/stream-processing.md."""
    if not probe.isascii():
        return False
    words = _ASCII_WORD_RE.findall(probe.lower())
    only = sum(w in ENGLISH_ONLY_WORDS for w in words)
    common = only + sum(w in ENGLISH_SHARED_WORDS for w in words)
    return only >= 1 and common >= 2 and 4 * common >= len(words)


class LanguageDetector:
    """English-or-not with lingua restricted to a few languages (low memory, lazy models).

    Texts shorter than ``short_text_chars`` letters are too short for n-gram models
    ("lol", "btc 100k soon" come back as Indonesian); for them a script check decides:
    Latin-script short texts pass as English, other scripts do not. Longer texts that
    :func:`looks_english` accepts are English; the others go through lingua's
    low-accuracy mode (trigrams only, ~4x faster), and a non-English verdict on a text
    under ``confirm_below`` letters is confirmed by the high-accuracy detector, so the
    fast path never rejects English on a hunch.
    """

    def __init__(
        self,
        languages: Sequence[str] = CleaningConfig.languages,
        short_text_chars: int = 30,
        confirm_below: int = 120,
    ) -> None:
        self.short_text_chars = short_text_chars
        self.confirm_below = confirm_below
        self._languages = tuple(sorted(set(languages) | {"en"}))
        self._fast: Any = None
        self._accurate: Any = None

    def warm_up(self) -> None:
        """Load both of lingua's detectors and their models now (seconds), not on the first
        text that needs them; the English pre-check alone would never load them."""
        if self._fast is None:
            self._fast = self._build(low_accuracy=True)
        if self._accurate is None:
            self._accurate = self._build(low_accuracy=False)
        for probe in ("Warming up the language models", "Calentando los modelos de idioma"):
            self._fast.detect_language_of(probe)
            self._accurate.detect_language_of(probe)

    def _build(self, *, low_accuracy: bool) -> Any:
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

        langs = [
            Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())) for code in self._languages
        ]
        builder = LanguageDetectorBuilder.from_languages(*langs)
        return (builder.with_low_accuracy_mode() if low_accuracy else builder).build()

    def detect(self, text: str) -> str:
        """ISO 639-1 code of the text's language ("und" when undecidable)."""
        probe = normalize_whitespace(_DETECT_STRIP_RE.sub(" ", text))
        if probe.isascii():
            letters: Sequence[str] = ASCII_LETTER_RE.findall(probe)
            latin = 1.0
        else:
            letters = [ch for ch in probe if ch.isalpha()]
            latin = sum(ch.isascii() for ch in letters) / len(letters) if letters else 0.0
        if not letters:
            return "und"
        if len(letters) < self.short_text_chars:
            return "en" if latin >= 0.9 else _script_guess(letters)
        if looks_english(probe):
            return "en"
        if self._fast is None:
            self._fast = self._build(low_accuracy=True)
        language = self._fast.detect_language_of(probe)
        if language is not None and language.iso_code_639_1.name == "EN":
            return "en"
        if len(letters) < self.confirm_below:
            if self._accurate is None:
                self._accurate = self._build(low_accuracy=False)
            language = self._accurate.detect_language_of(probe)
        if language is None:
            return "en" if latin >= 0.9 else "und"
        return str(language.iso_code_639_1.name).lower()


def _script_guess(letters: Sequence[str]) -> str:
    names = [unicodedata.name(ch, "") for ch in letters if not ch.isascii()]
    if any(n.startswith("CYRILLIC") for n in names):
        return "ru"
    if any(n.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL")) for n in names):
        return "zh"
    return "und"


@lru_cache(maxsize=4)
def default_detector(
    languages: tuple[str, ...] = CleaningConfig.languages, short_text_chars: int = 30
) -> LanguageDetector:
    return LanguageDetector(languages, short_text_chars)


def parse_payload(payload: bytes | str) -> RawText | Rejection:
    """Bytes off the wire to a raw record, telling malformed JSON from a wrong schema.

    JSON nested deeper than the interpreter's recursion limit is malformed too: ``json``
    raises RecursionError on it, which no caller expects from a parser.
    """
    try:
        json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        return Rejection(REASON_MALFORMED_JSON, f"{type(exc).__name__}: {exc}")
    except RecursionError:
        return Rejection(REASON_MALFORMED_JSON, "RecursionError: JSON nested too deeply")
    try:
        return parse_raw_text(payload)
    except ValidationError as exc:
        return Rejection(REASON_INVALID_SCHEMA, _validation_detail(exc))


def _validation_detail(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors[:5]]
    return f"{len(errors)} validation error(s): " + "; ".join(parts)


# --- the whole record -------------------------------------------------------------------


def _source_of(record: RawText) -> Source:
    return Source.NEWS if isinstance(record, NewsArticle) else Source.REDDIT


def _channel_of(record: RawText) -> str | None:
    if isinstance(record, NewsArticle):
        return (record.publisher or record.feed)[:256]
    return record.subreddit


def _url_of(record: RawText) -> str | None:
    if isinstance(record, NewsArticle):
        return record.link
    if isinstance(record, RedditPost):
        return record.permalink or record.url
    return record.permalink


def clean_record(
    record: RawText,
    *,
    config: CleaningConfig,
    tagger: TextTagger | Callable[[str], list[str]],
    detector: LanguageDetector | None = None,
) -> CleanPost | Rejection:
    """Validate and clean one raw record. Returns a CleanPost or the reason it is rejected."""
    raw = extract_text(record)
    if not raw.strip():
        return Rejection(REASON_EMPTY_TEXT, "no text after dropping placeholders", record.source_id)
    tag = tagger.tag if hasattr(tagger, "tag") else tagger
    cashtags = {m.upper() for m in _CASHTAG_RE.findall(raw)}
    cleaned = clean_text(raw, max_chars=config.max_chars, keep_upper=sorted(cashtags))
    if not cleaned.text:
        return Rejection(REASON_EMPTY_TEXT, "no text left after removing urls and markup", record.source_id)
    if len(cleaned.text) < config.min_chars:
        return Rejection(
            REASON_TOO_SHORT,
            f"{len(cleaned.text)} chars after cleaning, minimum {config.min_chars}: {cleaned.text!r}",
            record.source_id,
        )
    language = (detector or default_detector(config.languages, config.short_text_chars)).detect(cleaned.text)
    if language != "en":
        return Rejection(REASON_NON_ENGLISH, f"detected language {language!r}", record.source_id)
    coins = [c for c in tag(cleaned.cased or cleaned.text) if re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", c)]
    if not coins and (config.require_coin or cashtags):
        detail = (
            f"cashtags {sorted(cashtags)} not in the coin catalog"
            if cashtags
            else "no catalog coin mentioned"
        )
        return Rejection(REASON_UNKNOWN_COIN, detail, record.source_id)
    return CleanPost(
        source_id=record.source_id,
        event_time=record.event_time,
        ingest_time=record.ingest_time,
        source=_source_of(record),
        text=cleaned.text,
        original_length=cleaned.original_length,
        language="en",
        flags=list(dict.fromkeys(cleaned.flags)),
        author_hash=hash_author(record.author, config.author_salt),
        coins=coins,
        channel=_channel_of(record),
        url=_url_of(record),
        content_hash=content_hash(cleaned.text),
    )


__all__ = [
    "REASON_DUPLICATE_CONTENT",
    "REASON_DUPLICATE_ID",
    "REASON_EMPTY_TEXT",
    "REASON_INVALID_SCHEMA",
    "REASON_MALFORMED_JSON",
    "REASON_NON_ENGLISH",
    "REASON_SCORING_FAILED",
    "REASON_TOO_SHORT",
    "REASON_UNHANDLED_ERROR",
    "REASON_UNKNOWN_COIN",
    "CleanedText",
    "CleaningConfig",
    "LanguageDetector",
    "Rejection",
    "clean_record",
    "clean_text",
    "extract_text",
    "hash_author",
    "mask_pii",
    "parse_payload",
    "remove_urls",
    "spam_flags",
    "unescape_html",
]
