"""Unit tests of the faust-free cleaning rules (stream_processors.cleaning)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from schemas.events import CleanPost, NewsArticle, QualityFlag, RedditComment, RedditPost, Source
from stream_processors import cleaning as c

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CONFIG = c.CleaningConfig(author_salt="pepper")


class FakeTagger:
    """Tags bitcoin/ethereum only; the real catalog is exercised in test_real_catalog."""

    def tag(self, text: str) -> list[str]:
        low = text.lower()
        found = [
            cid
            for word, cid in (("btc", "bitcoin"), ("bitcoin", "bitcoin"), ("eth", "ethereum"))
            if word in low
        ]
        return list(dict.fromkeys(found))


def post(title: str, selftext: str = "", **kw: object) -> RedditPost:
    return RedditPost(
        source_id="t3_abc", event_time=T0, subreddit="Bitcoin", title=title, selftext=selftext, **kw
    )


def run(record, config: c.CleaningConfig = CONFIG):
    return c.clean_record(record, config=config, tagger=FakeTagger())


def test_html_unescape_double_and_tags() -> None:
    assert c.unescape_html("Tom &amp;amp; Jerry &lt;3 <b>bold</b>") == "Tom & Jerry <3  bold "


def test_url_removal_markdown_and_bare() -> None:
    text, removed = c.remove_urls(
        "see [the chart](https://x.com/a) and https://foo.bar/baz?q=1 or www.site.io"
    )
    assert "http" not in text and "www" not in text and "the chart" in text
    assert removed > 20


def test_pii_masking() -> None:
    text, masked = c.mask_pii("mail me at john.doe+x@gmail.com or call +1 415-555-2671, BTC at 97,000.50")
    assert masked
    assert "[email]" in text and "[phone]" in text and "555" not in text
    assert c.mask_pii("ring (415) 555-2671 or 415.555.2671")[0] == "ring [phone] or [phone]"
    assert "97,000.50" in text  # prices are not phone numbers


def test_prices_and_years_not_masked() -> None:
    text, masked = c.mask_pii("BTC hit 100000 in 2025 and ETH 3500 2024-01-05, 1,234,567 sats, 20 000 000")
    assert not masked, text


def test_whitespace_case_and_emoji_kept() -> None:
    cleaned = c.clean_text("  THIS   IS   HUGE for\n\n$BTC 🚀  ", keep_upper=["BTC"])
    assert cleaned.text == "this IS huge for $BTC 🚀"


def test_nfkc_folds_fancy_fonts() -> None:
    assert c.clean_text("𝐁𝐢𝐭𝐜𝐨𝐢𝐧 up").text == "Bitcoin up"


def test_truncation_flag() -> None:
    record = post("Bitcoin analysis", "price goes up and down every day " * 60)
    result = run(record)
    assert isinstance(result, CleanPost)
    assert len(result.text) <= 1000
    assert QualityFlag.TRUNCATED in result.flags
    assert result.original_length > 1000


def test_too_short_is_rejected() -> None:
    result = run(post("btc up"))
    assert isinstance(result, c.Rejection) and result.reason == c.REASON_TOO_SHORT


def test_empty_and_placeholders_rejected() -> None:
    comment = RedditComment(
        source_id="t1_abc", event_time=T0, subreddit="Bitcoin", body="[removed]", link_id="t3_abc"
    )
    result = run(comment)
    assert isinstance(result, c.Rejection) and result.reason == c.REASON_EMPTY_TEXT
    url_only = run(post("https://example.com/only-a-link"))
    assert isinstance(url_only, c.Rejection) and url_only.reason == c.REASON_EMPTY_TEXT


def test_non_english_rejected() -> None:
    result = run(post("El precio de bitcoin va a subir mucho esta semana según los analistas del mercado"))
    assert isinstance(result, c.Rejection) and result.reason == c.REASON_NON_ENGLISH
    german = run(post("Ich glaube, dass der Bitcoin Kurs heute noch deutlich steigen wird, Freunde"))
    assert isinstance(german, c.Rejection) and german.reason == c.REASON_NON_ENGLISH


FOREIGN = (
    "El precio de bitcoin va a subir mucho esta semana segun los analistas del mercado",
    "Ich glaube, dass der Bitcoin Kurs heute noch deutlich steigen wird, Freunde",
    "Was ist mit dem Bitcoin heute los, will niemand mehr kaufen oder was",
    "Le prix du bitcoin va encore monter cette semaine selon les analystes",
    "Bitcoin est the best, je pense que le prix va monter cette semaine avec les news",
    "O preco do bitcoin vai subir muito esta semana segundo os analistas do mercado",
    "Il prezzo del bitcoin salira molto questa settimana secondo gli analisti",
    "Het is tijd om bitcoin te kopen, de markt is nu heel sterk en het gaat omhoog",
    "Bitcoin fiyati bu hafta analistlere gore cok yukselecek arkadaslar",
    "Harga bitcoin akan naik banyak minggu ini menurut para analis pasar",
)


@pytest.mark.parametrize("text", FOREIGN)
def test_the_english_pre_check_never_accepts_other_languages(text: str) -> None:
    assert not c.looks_english(text.lower())
    assert c.LanguageDetector().detect(text.lower()) != "en"


def test_the_english_pre_check_settles_plain_english_without_lingua() -> None:
    detector = c.LanguageDetector()
    for text in (
        "bitcoin looks really strong this morning, what do you think about it",
        "tesla stock price target cut to from at deutsche bank",  # lingua's fast mode: German
        "here is what hedge funds think about companhia brasileira de distrib",
    ):
        assert c.looks_english(text), text
        assert detector.detect(text) == "en"
    assert detector._fast is None and detector._accurate is None  # lingua never loaded
    assert not c.looks_english("the bitcoin price is über the moon and you know it")  # not ASCII
    assert not c.looks_english("bitcoin etf inflows grow as the price surges past")  # 2 of 9 words


def test_short_english_fallback_and_cyrillic() -> None:
    detector = c.LanguageDetector()
    assert detector.detect("btc 100k soon lol") == "en"
    assert detector.detect("биткоин растёт") == "ru"
    assert detector.detect("🚀🚀🚀") == "und"


def test_english_accepted_with_fields() -> None:
    record = post(
        "Bitcoin just broke resistance, feeling bullish about BTC this week &amp; beyond",
        "Details: https://example.com/chart",
        author="SatoshiFan",
        permalink="/r/Bitcoin/comments/abc/",
    )
    result = run(record)
    assert isinstance(result, CleanPost), result
    assert result.source is Source.REDDIT and result.channel == "Bitcoin"
    assert "&amp;" not in result.text and "https" not in result.text
    assert result.coins == ["bitcoin"]
    assert result.author_hash == c.hash_author("SatoshiFan", "pepper")
    assert result.author_hash != c.hash_author("SatoshiFan", "other-salt")
    assert "SatoshiFan" not in result.model_dump_json()
    assert result.ingest_time == record.ingest_time


def test_deleted_author_not_hashed() -> None:
    assert c.hash_author("[deleted]", "s") is None
    assert c.hash_author(None, "s") is None


def test_unknown_coin_cashtag_rejected() -> None:
    result = run(post("$ZZQX is the best project I have ever seen in my whole life"))
    assert isinstance(result, c.Rejection) and result.reason == c.REASON_UNKNOWN_COIN


def test_no_coin_kept_unless_required() -> None:
    text = "The whole crypto market looks tired today, waiting for the next move"
    assert isinstance(run(post(text)), CleanPost)
    strict = c.CleaningConfig(author_salt="pepper", require_coin=True)
    result = run(post(text), strict)
    assert isinstance(result, c.Rejection) and result.reason == c.REASON_UNKNOWN_COIN


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("buy buy buy buy buy bitcoin now everyone please", QualityFlag.REPEATED_TEXT),
        ("Bitcoin to the moon, next 100x gem, join our telegram", QualityFlag.PUMP_AND_DUMP),
        ("BITCOIN IS GOING UP TODAY EVERYONE BUY", QualityFlag.EXCESSIVE_CAPS),
        ("bitcoin 🚀🚀🚀🔥🔥🔥💎💎💎 yes", QualityFlag.EXCESSIVE_EMOJI),
    ],
)
def test_spam_flags(text: str, flag: QualityFlag) -> None:
    result = run(post(text))
    assert isinstance(result, CleanPost), result
    assert flag in result.flags


def test_link_mostly_flagged() -> None:
    result = run(post("Bitcoin chart update", "https://example.com/" + "a" * 80))
    assert isinstance(result, CleanPost)
    assert QualityFlag.LINK_ONLY in result.flags


def test_pii_flag_on_record() -> None:
    result = run(post("Contact me at whale@example.com for bitcoin OTC deals this week"))
    assert isinstance(result, CleanPost)
    assert QualityFlag.PII_MASKED in result.flags and "example.com" not in result.text


def test_news_title_summary_merge() -> None:
    article = NewsArticle(
        source_id="news-1",
        event_time=T0,
        feed="https://feed.example/rss",
        publisher="CoinDesk",
        title="Bitcoin ETF sees record inflows",
        summary="Bitcoin ETF sees record inflows as institutions pile into the market.",
        link="https://coindesk.example/a",
    )
    result = run(article)
    assert isinstance(result, CleanPost)
    assert result.source is Source.NEWS and result.channel == "CoinDesk"
    assert result.text.count("record inflows") == 1
    assert result.url == "https://coindesk.example/a"


def test_parse_payload_reasons() -> None:
    bad_json = c.parse_payload(b"{not json")
    assert isinstance(bad_json, c.Rejection) and bad_json.reason == c.REASON_MALFORMED_JSON
    not_utf8 = c.parse_payload(b"\xff\xfe\x00")
    assert isinstance(not_utf8, c.Rejection) and not_utf8.reason == c.REASON_MALFORMED_JSON
    wrong = c.parse_payload(json.dumps({"kind": "post", "source_id": "nope"}))
    assert isinstance(wrong, c.Rejection) and wrong.reason == c.REASON_INVALID_SCHEMA
    unknown_kind = c.parse_payload(json.dumps({"kind": "tweet"}))
    assert isinstance(unknown_kind, c.Rejection) and unknown_kind.reason == c.REASON_INVALID_SCHEMA
    good = c.parse_payload(post("Bitcoin is fine today").to_json())
    assert isinstance(good, RedditPost)


def test_content_hash_stable_across_whitespace_and_case() -> None:
    a = run(post("Bitcoin  is looking strong today"))
    b = run(post("bitcoin is looking   STRONG today"))
    assert isinstance(a, CleanPost) and isinstance(b, CleanPost)
    assert a.content_hash == b.content_hash


def test_real_catalog() -> None:
    coins = pytest.importorskip("scoring.coins")
    result = c.clean_record(
        post("Thinking of moving my ETH into $SOL, Bitcoin fees are too high"),
        config=CONFIG,
        tagger=coins.CoinCatalog.default(),
    )
    assert isinstance(result, CleanPost)
    assert set(result.coins) >= {"ethereum", "solana", "bitcoin"}


def test_warm_up_loads_both_lingua_detectors() -> None:
    detector = c.LanguageDetector()
    detector.warm_up()
    assert detector._fast is not None and detector._accurate is not None
