"""Escaping per output channel: one function per channel, applied wherever a name reaches text.

Names are data that other people control: anyone who can create an OpenRouter key names it, and anyone who
edits the configuration names projects, owners and annotations. Every channel the project writes has its own
syntax, so a name is escaped for the channel it lands in, at the point where it is put into that channel's
text, and nowhere earlier (the warehouse keeps names verbatim). The templates (openrouter_spend.rendering) apply
the channel's function to every value by default and offer each as a filter:

- `html` for the HTML digest and the Airflow Spend view;
- `slack` for Slack mrkdwn and message text (`<!channel>` stays text, it pings nobody);
- `markdown` for digest.md, which is also the plain-text part of the digest e-mail;
- `csv_cell` for every text cell of every CSV (spreadsheets run cells that look like formulas);
- `sql_literal` for values pasted into SQL that people copy (the alerts' "Reproduce:" queries);
- `mail_header` for names in an e-mail header (a subject naming budget owners).

Each function takes any value (None becomes the empty string) and returns text safe for its channel.
"""

from __future__ import annotations

import re
from typing import Any

import markupsafe

# Spreadsheets (Excel, LibreOffice, Google Sheets) evaluate a cell whose first character is one of these
# (OWASP, CSV injection).
CSV_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

# CommonMark and GFM syntax that acts inside a line: code spans, emphasis, links and images, raw HTML and
# autolinks (an escaped "<" leaves ">" nothing to close), tables and strikethrough. "_" only when it can open
# or close emphasis (not inside a word, so snake_case names stay readable), "&" only when it starts an entity.
_MARKDOWN_SPECIAL = re.compile(r"[\\`*\[\]<|~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])|&(?=#?[0-9A-Za-z]+;)")
# Block markers act at the start of a line or list item (a heading, a quote, a rule, a list, a setext
# underline): escaped there, since a name may open a list item.
_MARKDOWN_BLOCK_START = re.compile(r"^([#>+=-])|^(\d+)([.)])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def html(value: Any) -> str:
    """Text for HTML element content and quoted attribute values: & < > " ' escaped.

    The same rule as the HTML templates' autoescape (markupsafe), so a filtered and an autoescaped value agree.
    """
    return str(markupsafe.escape(_text(value)))


def slack(value: Any) -> str:
    """Text for Slack mrkdwn and a message's `text`: &, < and > escaped as Slack documents.

    Slack reads `<...>` as a link, a user or channel mention or a broadcast (`<!channel>`, `<!here>`), so a name
    with angle brackets must reach Slack as entities; formatting characters (*, _, ~) cannot be escaped in
    mrkdwn and at worst change emphasis.
    """
    return _text(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markdown(value: Any) -> str:
    """Text for inline Markdown (a table cell, a list item): markup characters backslash-escaped, one line.

    A backslash before ASCII punctuation is a literal in CommonMark, so `<script>` shows as text instead of
    raw HTML, `|` cannot end a table cell, `[x](http://...)` cannot become a link and a leading `-` or `#`
    cannot make a list or a heading; line breaks become spaces so a name cannot start a new block.
    """
    text = _MARKDOWN_SPECIAL.sub(lambda match: "\\" + match.group(0), _LINE_BREAKS.sub(" ", _text(value)))
    return _MARKDOWN_BLOCK_START.sub(
        lambda match: "\\" + match.group(1) if match.group(1) else match.group(2) + "\\" + match.group(3), text)


def csv_cell(value: Any) -> str:
    """A text cell for a CSV file: a leading single quote when the text would start a formula (OWASP).

    Only text cells go through here; numbers are written as numbers (a negative amount is not a formula).
    The quote is what spreadsheets use to mark a cell as text, so the cell displays the name as written.
    """
    text = _text(value)
    return "'" + text if text.startswith(CSV_FORMULA_TRIGGERS) else text


def csv_cell_sql(expression: str) -> str:
    """The SQL form of `csv_cell` for a VARCHAR expression (DuckDB), for CSV files written with COPY."""
    triggers = ", ".join(f"chr({ord(c)})" if c in "\t\r" else f"'{c}'" for c in CSV_FORMULA_TRIGGERS)
    return f"case when left({expression}, 1) in ({triggers}) then '''' || {expression} else {expression} end"


def sql_literal(value: Any) -> str:
    """A SQL string literal: the text in single quotes with every quote doubled; NULL for None."""
    if value is None:
        return "null"
    return "'" + str(value).replace("'", "''") + "'"


def mail_header(value: Any) -> str:
    """Text for one e-mail header: control characters and line breaks become single spaces.

    A line break would start a new header (or fail the message); the mail library encodes the rest.
    """
    return " ".join("".join(" " if ord(c) < 32 or c == "\x7f" else c for c in _text(value)).split())
