"""An issue's Markdown as sanitised HTML, as the equivalent plain text, and as the issue mail."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from flask import render_template
from markupsafe import Markup

from service.issues.markdown import inline_css, markdown_to_html, markdown_to_text

LONG_URL = (
    "https://www.socialnibydleni.example/archiv/2025/metodika-prostupneho-bydleni"
    "?utm_source=zpravodaj&utm_medium=email&utm_campaign=brezen-2025-dlouha-adresa"
)

RICH_ISSUE = f"""\
# Březnové číslo

Vážení čtenáři, **přinášíme** _novinky_ ze ~~starého~~ nového programu
sociálního bydlení. Podrobnosti najdete na [webu programu](https://www.socialnibydleni.example/)
a celou metodiku v [příloze]({LONG_URL}).

## Co se změnilo

- Obce mohou žádat o dotaci na **kontaktní místa**.
- Nové vzory smluv:
  - nájemní smlouva,
  - podnájemní smlouva.
- Termíny: <https://www.socialnibydleni.example/terminy>

1. Přečtěte si metodiku.
2. Vyplňte `formulář-č-2` a pošlete ho e-mailem.

> Bydlení je základní potřeba, ne odměna.
> — Ústřední myšlenka programu

![Mapa zapojených obcí](https://www.socialnibydleni.example/mapa.png)

### Počty bytů

| Kraj | Byty |
|------|-----:|
| Ústecký | 120 |
| Moravskoslezský | 245 |

    ./zpracuj --kraj ústecký

---

Děkujeme, že čtete zpravodaj.
"""

CONTEXT = {
    "subject": "Zpravodaj sociálního bydlení – březen 2025",
    "preheader": "Nové vzory smluv a mapa zapojených obcí",
    "list_name": "Zpravodaj sociálního bydlení",
    "sender_name": "Sociální bydlení v ČR",
    "reason": (
        "Tento e-mail dostáváte, protože jste se přihlásili k odběru Zpravodaje sociálního bydlení."
    ),
    "unsubscribe_url": "http://zpravodaj.test/unsubscribe/TOKEN-1",
    "preferences_url": "http://zpravodaj.test/preferences/TOKEN-2",
    "archive_url": "http://zpravodaj.test/archiv",
    "web_url": "http://zpravodaj.test/archiv/2025-03",
}


class _VisibleText(HTMLParser):
    """The text a reader sees: everything outside <head>, tags dropped, entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("head", "style", "title"):
            self._hidden_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "style", "title"):
            self._hidden_depth -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    return " ".join(parser.parts)


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def render_issue(source: str = RICH_ISSUE, **overrides) -> tuple[str, str]:
    """The issue mail's text and (CSS-inlined) HTML parts, as the sender will build them."""
    context = {
        **CONTEXT,
        "body_html": Markup(markdown_to_html(source)),
        "body_text": markdown_to_text(source),
        **overrides,
    }
    text = render_template("email/issue.txt", **context)
    html = inline_css(render_template("email/issue.html", **context))
    return text, html


# --- sanitising -------------------------------------------------------------------------------


def test_raw_html_in_the_source_is_shown_as_text_not_run():
    html = markdown_to_html('Ahoj <script>alert("x")</script> <b onclick="x()">tučně</b>')

    assert "<script" not in html
    assert "<b" not in html
    assert "&lt;script&gt;" in html


def test_block_of_raw_html_with_event_handler_is_escaped():
    html = markdown_to_html('<img src="https://x.example/a.png" onerror="alert(1)">\n')

    assert "<img" not in html
    assert "&lt;img" in html


def test_javascript_and_data_links_do_not_become_links():
    html = markdown_to_html(
        "[klikni](javascript:alert(1)) [data](data:text/html;base64,PHNjcmlwdD4=) "
        "![x](javascript:alert(2))"
    )

    assert "<a" not in html
    assert "<img" not in html
    assert 'href="javascript' not in html.lower()
    assert 'src="data' not in html.lower()


def test_relative_links_are_refused_because_mail_has_no_base_url():
    assert "<a" not in markdown_to_html("[archiv](/archiv)")


def test_links_get_rel_noopener_and_keep_their_title():
    html = markdown_to_html('[web](https://www.socialnibydleni.example/ "Web programu")')

    assert (
        '<a href="https://www.socialnibydleni.example/" title="Web programu" '
        'rel="noopener noreferrer">web</a>'
    ) in html


def test_mailto_links_are_allowed():
    assert 'href="mailto:info@socialnibydleni.example"' in markdown_to_html(
        "<info@socialnibydleni.example>"
    )


def test_images_keep_the_alt_text_the_author_wrote():
    html = markdown_to_html('![Mapa **zapojených** obcí](https://x.example/mapa.png "Mapa")')

    assert '<img src="https://x.example/mapa.png" alt="Mapa zapojených obcí" title="Mapa">' in html


def test_images_without_alt_text_get_an_empty_alt():
    assert 'alt=""' in markdown_to_html("![](https://x.example/dekorace.png)")


def test_tables_render_without_inline_styles():
    html = markdown_to_html("| Kraj | Byty |\n|---|--:|\n| Ústecký | 120 |\n")

    assert "<table>" in html
    assert "<th>Kraj</th>" in html
    assert "<td>120</td>" in html
    assert "style=" not in html


def test_strikethrough_renders_as_s():
    assert "<s>starého</s>" in markdown_to_html("~~starého~~")


def test_deep_headings_become_h4_instead_of_losing_their_block():
    html = markdown_to_html("###### Poznámka\n\nText")

    assert "<h4>Poznámka</h4>" in html


def test_only_allowed_tags_come_out_of_a_rich_issue():
    tags = set(re.findall(r"<([a-z0-9]+)", markdown_to_html(RICH_ISSUE)))

    assert tags <= {
        "p", "br", "h1", "h2", "h3", "h4", "strong", "em", "s", "a", "ul", "ol", "li",
        "blockquote", "code", "pre", "hr", "img", "table", "thead", "tbody", "tr", "th", "td",
    }  # fmt: skip
    assert {"h1", "h2", "h3", "ul", "ol", "a", "img", "blockquote", "pre", "table", "hr"} <= tags


# --- plain text -------------------------------------------------------------------------------


def test_text_part_contains_every_word_of_the_html_part():
    html_words = words(visible_text(markdown_to_html(RICH_ISSUE)))
    text_words = words(markdown_to_text(RICH_ISSUE))

    assert "přinášíme" in html_words
    assert html_words - text_words == set()


def test_links_are_written_as_text_and_url():
    text = markdown_to_text("Viz [web programu](https://www.socialnibydleni.example/).")

    assert text == "Viz web programu (https://www.socialnibydleni.example/)."


def test_autolinks_are_written_once():
    text = markdown_to_text("Termíny: <https://www.socialnibydleni.example/terminy>")

    assert text == "Termíny: https://www.socialnibydleni.example/terminy"


def test_long_urls_are_never_broken_by_wrapping():
    text = markdown_to_text(RICH_ISSUE)

    assert LONG_URL in text
    assert any(len(line) > 72 for line in text.splitlines())  # the URL alone overflows
    for line in text.splitlines():
        assert len(line) <= 72 or "https://" in line or line.startswith("    ")


def test_paragraphs_are_wrapped_at_72_columns():
    source = " ".join(["sociální bydlení"] * 30)

    lines = markdown_to_text(source).splitlines()

    assert len(lines) > 1
    assert all(len(line) <= 72 for line in lines)


def test_headings_are_underlined_or_prefixed():
    text = markdown_to_text("# Březen\n\n## Novinky\n\n### Počty bytů")

    assert text == "Březen\n======\n\nNovinky\n-------\n\n### Počty bytů"


def test_lists_are_bulleted_numbered_and_nested():
    text = markdown_to_text(RICH_ISSUE)

    assert "- Nové vzory smluv:\n  - nájemní smlouva,\n  - podnájemní smlouva." in text
    assert "1. Přečtěte si metodiku.\n2. Vyplňte formulář-č-2 a pošlete ho e-mailem." in text


def test_ordered_list_keeps_its_start_number_and_aligns_continuations():
    text = markdown_to_text("9. devátý\n10. desátý se dvěma řádky  \n    druhý řádek")

    assert text == "9.  devátý\n10. desátý se dvěma řádky\n    druhý řádek"


def test_quotes_code_images_tables_and_rules_have_text_forms():
    text = markdown_to_text(RICH_ISSUE)

    assert "> Bydlení je základní potřeba, ne odměna. — Ústřední myšlenka programu" in text
    assert "    ./zpracuj --kraj ústecký" in text
    assert "[obrázek: Mapa zapojených obcí] (https://www.socialnibydleni.example/mapa.png)" in (
        " ".join(text.split())  # the wrap may fall between the label and its URL
    )
    assert "Kraj | Byty\n-----------\nÚstecký | 120\nMoravskoslezský | 245" in text
    assert "\n" + "-" * 72 + "\n" in text


def test_emphasis_becomes_plain_words():
    assert markdown_to_text("**tučně** _kurzívou_ ~~škrtnuto~~ `kód`") == (
        "tučně kurzívou škrtnuto kód"
    )


def test_raw_html_appears_in_the_text_as_the_reader_sees_it_in_html():
    assert markdown_to_text("Ahoj <b>světe</b> & ostatní") == "Ahoj <b>světe</b> & ostatní"


# --- CSS inlining -----------------------------------------------------------------------------


def test_inline_css_puts_styles_on_elements_and_keeps_media_queries():
    html = inline_css(
        "<html><head><style>p { color: #1a1a1a; } a { color: #1f4e79; }"
        "@media (max-width: 620px) { p { font-size: 18px; } }</style></head>"
        '<body><p>Text <a href="https://x.example/">odkaz</a></p></body></html>'
    )

    assert re.search(r'<p style="[^"]*color: ?#1a1a1a', html)
    assert re.search(r'<a href="https://x.example/" style="[^"]*color: ?#1f4e79', html)
    assert "@media (max-width: 620px)" in html


# --- the issue mail ---------------------------------------------------------------------------


def test_issue_html_is_czech_responsive_and_styled_inline(app):
    _, html = render_issue()

    assert html.lower().startswith("<!doctype html>")
    assert '<html lang="cs">' in html
    assert '<meta charset="utf-8">' in html
    assert 'name="viewport"' in html
    assert "<title>Zpravodaj sociálního bydlení – březen 2025</title>" in html
    assert 'role="presentation"' in html
    assert "max-width: 600px" in html
    assert "@media (max-width: 620px)" in html
    assert re.search(r'<p style="[^"]*margin', html)
    assert re.search(
        r'<a href="https://www.socialnibydleni.example/"[^>]*style="[^"]*#1f4e79', html
    )
    assert re.search(r'<img [^>]*style="[^"]*max-width: 100%', html)


def test_issue_html_footer_says_who_sends_it_why_and_links_out(app):
    _, html = render_issue()
    footer = html[html.index('class="footer"') :]

    assert "Sociální bydlení v ČR" in footer
    assert CONTEXT["reason"] in footer
    for label, url in [
        ("Nastavení odběru", CONTEXT["preferences_url"]),
        ("Odhlásit se z odběru", CONTEXT["unsubscribe_url"]),
        ("Archiv zpravodaje", CONTEXT["archive_url"]),
        ("Zobrazit v prohlížeči", CONTEXT["web_url"]),
    ]:
        assert re.search(rf'<a href="{re.escape(url)}"[^>]*>{label}</a>', footer)


def test_issue_html_has_no_browser_link_for_a_draft_preview(app):
    text, html = render_issue(web_url=None)

    assert "Zobrazit v prohlížeči" not in html
    assert "Zobrazit v prohlížeči" not in text
    assert "None" not in html
    assert "None" not in text


def test_issue_html_hides_the_preheader_when_given(app):
    _, html = render_issue()

    match = re.search(r'<span class="preheader" style="([^"]*)">([^<]*)</span>', html)
    assert match
    assert "display:none" in match[1]
    assert "max-height:0" in match[1]
    assert "overflow:hidden" in match[1]
    assert match[2] == CONTEXT["preheader"]


def test_issue_html_has_no_preheader_when_empty(app):
    _, html = render_issue(preheader="")

    assert "preheader" not in html
    assert "display:none" not in html


def test_issue_text_carries_the_urls_in_full_each_on_its_own_line(app):
    text, _ = render_issue()
    lines = text.splitlines()

    assert lines[:2] == [CONTEXT["subject"], "=" * len(CONTEXT["subject"])]
    assert "-- " in lines
    assert f"Odhlásit se z odběru: {CONTEXT['unsubscribe_url']}" in lines
    assert f"Nastavení odběru: {CONTEXT['preferences_url']}" in lines
    assert f"Archiv zpravodaje: {CONTEXT['archive_url']}" in lines
    assert f"Zobrazit v prohlížeči: {CONTEXT['web_url']}" in lines
    assert LONG_URL in text


def test_issue_text_is_not_html_escaped(app):
    text, html = render_issue("Nájem & služby <3", subject="Byty & domy")

    assert "Nájem & služby <3" in text
    assert "Byty & domy" in text
    assert "&amp;" not in text
    assert "Nájem &amp; služby &lt;3" in html


@pytest.mark.parametrize("preheader", ["", CONTEXT["preheader"]])
def test_issue_text_contains_every_word_of_the_issue_html(app, preheader):
    text, html = render_issue(preheader=preheader)

    assert words(visible_text(html)) - words(text) == set()


def test_the_text_footer_names_the_list_once_when_it_is_the_sender(app):
    """Not "Zpravodaj sociálního bydlení, Zpravodaj sociálního bydlení" (issue 16)."""
    with app.test_request_context():
        text, _ = render_issue(sender_name="Zpravodaj sociálního bydlení")
        assert "Zpravodaj sociálního bydlení, Zpravodaj sociálního bydlení" not in text
        assert "\nZpravodaj sociálního bydlení\n" in text
        text, _ = render_issue()
        assert "\nSociální bydlení v ČR, Zpravodaj sociálního bydlení\n" in text
