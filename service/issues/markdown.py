"""An issue's Markdown as sanitised mail HTML and as the equivalent plain text.

Both parts come from one markdown-it token stream, so the text/plain part says
exactly what the HTML part says (DESIGN.md §5.6; SpamAssassin's MPART_ALT_DIFF
scores mails whose two parts differ).
"""

from __future__ import annotations

import functools
import textwrap
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

# markdown-it, nh3 and css-inline (~4 MB) are imported on first use, not here:
# every web and worker process loads this module with the app, but only a
# process that renders an issue (the web's "send", a scheduled start) uses them.
if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.rules_core import StateCore
    from markdown_it.tree import SyntaxTreeNode

# Plain-text mail is read at 72 columns (RFC 3676 suggests no more than 78).
TEXT_WIDTH = 72
# Nested lists and quotes narrow the text; never below this, or words stand alone.
MIN_TEXT_WIDTH = 30
# Mail has no base URL, so only absolute links to these schemes make sense.
URL_SCHEMES = frozenset({"http", "https", "mailto"})
# Headings deeper than this read as h4 (a deeper level is not in the allowed tags).
DEEPEST_HEADING = 4

ALLOWED_TAGS = frozenset(
    {
        "p", "br", "h1", "h2", "h3", "h4", "strong", "em", "s", "a", "ul", "ol", "li",
        "blockquote", "code", "pre", "hr", "img", "table", "thead", "tbody", "tr", "th", "td",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
}


def _is_mail_safe_url(url: str) -> bool:
    """Accept absolute http(s) and mailto URLs only: no javascript:, data:, or relative paths."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    if parts.scheme.lower() not in URL_SCHEMES:
        return False
    return bool(parts.path) if parts.scheme.lower() == "mailto" else bool(parts.netloc)


def _clamp_headings(state: StateCore) -> None:
    """Render h5/h6 as h4, so the sanitiser does not flatten them into the next paragraph."""
    for token in state.tokens:
        if token.type in ("heading_open", "heading_close") and int(token.tag[1]) > DEEPEST_HEADING:
            token.tag = f"h{DEEPEST_HEADING}"


@functools.cache
def _parser() -> MarkdownIt:
    """CommonMark with tables and strikethrough; raw HTML in the source is shown as text."""
    from markdown_it import MarkdownIt  # on first use: see the imports

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    # A link with a refused URL stays literal text in both parts, rather than
    # becoming an <a> the sanitiser would empty of its href.
    # (markdown-it-py's documented hook; its type hints see a method, not a slot.)
    md.validateLink = _is_mail_safe_url  # type: ignore[method-assign]
    md.core.ruler.push("clamp_headings", _clamp_headings)
    return md


def markdown_to_html(source: str) -> str:
    """The HTML part of an issue: rendered Markdown, sanitised as if it were hostile.

    Editors' accounts can be phished; the sanitiser makes sure no script, event
    handler, style or dangerous URL reaches thousands of inboxes even then.
    """
    import nh3  # on first use: see the imports

    rendered = _parser().render(source)
    return nh3.clean(
        rendered,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def markdown_to_text(source: str) -> str:
    """The text/plain part of an issue, from the same tokens as the HTML part.

    Built from the syntax tree rather than by stripping the HTML, so lists,
    quotes, code and link targets keep a readable plain-text form.
    """
    from markdown_it.tree import SyntaxTreeNode  # on first use: see the imports

    tree = SyntaxTreeNode(_parser().parse(source))
    return "\n\n".join(_blocks(tree.children, TEXT_WIDTH))


def _blocks(nodes: list[SyntaxTreeNode], width: int, tight: bool = False) -> list[str]:
    """Each block node as a string; callers join them with blank lines (or newlines if tight)."""
    blocks = [_block(node, width) for node in nodes]
    if tight:
        # Inside a tight list item: paragraph and nested list sit on adjacent lines.
        return ["\n".join(block for block in blocks if block)]
    return [block for block in blocks if block]


def _block(node: SyntaxTreeNode, width: int) -> str:
    """One block-level node in plain text."""
    width = max(width, MIN_TEXT_WIDTH)
    kind = node.type
    if kind == "paragraph":
        return _wrap(_inline_of(node), width)
    if kind == "heading":
        return _heading(node)
    if kind in ("bullet_list", "ordered_list"):
        return _list(node, width)
    if kind == "blockquote":
        inner = "\n\n".join(_blocks(node.children, width - 2))
        return "\n".join(f"> {line}" if line else ">" for line in inner.split("\n"))
    if kind in ("code_block", "fence"):
        # Code is never re-wrapped: its line breaks mean something.
        return "\n".join(
            f"    {line}" if line else "" for line in node.content.rstrip("\n").split("\n")
        )
    if kind == "hr":
        return "-" * width
    if kind == "table":
        return _table(node)
    if kind == "html_block":
        return node.content.rstrip("\n")
    return "\n\n".join(_blocks(node.children, width))


def _heading(node: SyntaxTreeNode) -> str:
    """Level 1 and 2 underlined (setext style), deeper levels prefixed with hashes."""
    text = _inline_of(node)
    level = int(node.tag[1])
    if level == 1:
        return f"{text}\n{'=' * min(len(text), TEXT_WIDTH)}"
    if level == 2:
        return f"{text}\n{'-' * min(len(text), TEXT_WIDTH)}"
    return f"{'#' * level} {text}"


def _list(node: SyntaxTreeNode, width: int) -> str:
    """Bullets as `- `, numbers as `1. `, continuation lines indented under the text."""
    items = node.children
    tight = any(
        child.type == "paragraph" and child.hidden for item in items for child in item.children
    )
    if node.type == "ordered_list":
        start = int(node.attrs.get("start", 1))
        last = start + len(items) - 1
        markers = [f"{number}. ".ljust(len(f"{last}. ")) for number in range(start, last + 1)]
    else:
        markers = ["- "] * len(items)
    rendered = []
    for marker, item in zip(markers, items, strict=True):
        indent = " " * len(marker)
        body = "\n\n".join(_blocks(item.children, width - len(marker), tight=tight))
        lines = body.split("\n") if body else [""]
        first, rest = lines[0], lines[1:]
        rendered.append(
            "\n".join([marker + first] + [indent + line if line else "" for line in rest]).rstrip()
        )
    return ("\n" if tight else "\n\n").join(rendered)


def _table(node: SyntaxTreeNode) -> str:
    """Rows as `a | b`, the header row underlined; mail fonts are rarely monospaced."""
    lines = []
    for section in node.children:
        for row in section.children:
            lines.append(" | ".join(_inline_of(cell) for cell in row.children).strip())
            if section.type == "thead":
                lines.append("-" * min(len(lines[-1]), TEXT_WIDTH))
    return "\n".join(lines)


def _inline_of(node: SyntaxTreeNode) -> str:
    """The inline content of a block (paragraph, heading, table cell) as plain text."""
    return "".join(_inline(child) for child in node.children).strip()


def _inline(node: SyntaxTreeNode) -> str:
    """One inline node: emphasis as plain words, links as `text (URL)`, images described."""
    kind = node.type
    if kind in ("text", "code_inline", "html_inline"):
        return node.content
    if kind == "softbreak":
        return " "
    if kind == "hardbreak":
        return "\n"
    if kind == "link":
        text = "".join(_inline(child) for child in node.children)
        href = str(node.attrs.get("href", ""))
        if text.strip() in (href, unquote(href), href.removeprefix("mailto:")):
            return text
        return f"{text} ({href})"
    if kind == "image":
        alt = "".join(_inline(child) for child in node.children).strip()
        label = f"[obrázek: {alt}]" if alt else "[obrázek]"
        return f"{label} ({node.attrs.get('src', '')})"
    return "".join(_inline(child) for child in node.children)


def _wrap(text: str, width: int) -> str:
    """Fill at width, keeping hard line breaks; a URL is never split, even if over-long."""
    wrapper = textwrap.TextWrapper(width=width, break_long_words=False, break_on_hyphens=False)
    return "\n".join(wrapper.fill(line) if line.strip() else "" for line in text.split("\n"))


@functools.cache
def _inliner():
    import css_inline  # on first use: see the imports

    return css_inline.CSSInliner(
        # The <style> block stays for what cannot be inlined: the @media rule of the
        # mobile layout. Nothing is fetched: a mail must render the same everywhere.
        keep_style_tags=True,
        load_remote_stylesheets=False,
    )


def inline_css(html: str) -> str:
    """Copy the <style> rules onto the elements: Gmail and Outlook ignore most of <style>."""
    return _inliner().inline(html)
