"""Checks that a piece of output is inert: what a spreadsheet, a browser, Slack or a Markdown renderer makes of it."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from html.parser import HTMLParser

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
EVIL_HOST = "evil.example"
URL_ATTRIBUTES = ("href", "src", "srcset", "action", "formaction", "data", "poster", "background")


def live_formulas(text: str) -> list[str]:
    """Cells of a CSV text that a spreadsheet would evaluate: text starting with a trigger (numbers are fine)."""
    found = []
    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            if cell.startswith(FORMULA_TRIGGERS):
                try:
                    float(cell)
                except ValueError:
                    found.append(cell)
    return found


def cells(text: str) -> set[str]:
    """Every cell of a CSV text."""
    return {cell for row in csv.reader(io.StringIO(text)) for cell in row}


@dataclass
class Page(HTMLParser):
    """What a browser builds from HTML: the elements, their attributes and the visible text."""

    tags: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    @classmethod
    def of(cls, html: str) -> Page:
        page = cls()
        page.feed(html)
        page.close()
        return page

    @property
    def visible_text(self) -> str:
        return "".join(self.text)

    def problems(self) -> list[str]:
        """Elements or attributes that hostile text could have produced: script, event handlers, links out."""
        found = []
        for tag, attrs in self.tags:
            if tag in ("script", "iframe", "object", "embed", "form"):
                found.append(f"<{tag}> element")
            for name, value in attrs.items():
                if name.startswith("on"):
                    found.append(f"{name} handler on <{tag}>")
                if name in URL_ATTRIBUTES and value and EVIL_HOST in value:
                    found.append(f"{name}={value!r} on <{tag}>")
        return found


def render_markdown(text: str) -> str:
    """digest.md as a CommonMark + GFM-table renderer with raw HTML enabled turns it into HTML."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


def slack_texts(payload) -> list[str]:
    """Every string Slack would interpret in a webhook payload (message text and block texts)."""
    if isinstance(payload, dict):
        return [text for key, value in payload.items() for text in
                ([value] if key == "text" and isinstance(value, str) else slack_texts(value))]
    if isinstance(payload, list):
        return [text for item in payload for text in slack_texts(item)]
    return []
