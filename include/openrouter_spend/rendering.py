"""Every text the project renders comes from a Jinja2 template in `openrouter_spend/templates/`.

One environment per output channel, built once, each making its channel's escaping the default for every
`{{ expression }}`, so a template cannot forget it. A template's name ends with its channel, so it is always
rendered in the right environment:

- `.html.j2` → `html`: autoescape (the digest, the Spend view);
- `.md.j2` → `markdown`: `escaping.markdown` (digest.md);
- `.mrkdwn.j2` → `slack`: `escaping.slack` (Slack mrkdwn and message text);
- `.header.j2` → `mail_header`: `escaping.mail_header` (e-mail subjects);
- `.sql.j2` → `sql`: `escaping.sql_literal` (the alerts' "Reproduce:" queries: every expression a literal);
- `.txt.j2` → `text`: plain text, nothing to escape (alert messages and e-mail bodies; Slack escapes them
  when it carries them).

A value that is already rendered for the channel (a formatted amount, a fragment rendered by another
template) is marked with `|safe` or `markupsafe.Markup` and passes unchanged; `None` reads as a dash in the
digest's channels. Every channel's escaper is also registered as a filter (`html`, `slack`, `markdown`,
`csv_cell`, `sql_literal`, `mail_header`) on every environment; the rules themselves live in
`openrouter_spend.escaping`. Undefined variables fail loudly (StrictUndefined), never render empty.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, TemplateNotFound
from markupsafe import Markup

from openrouter_spend import escaping
from openrouter_spend.reports.digest import formatting

CHANNEL_SUFFIXES = {".html.j2": "html", ".md.j2": "markdown", ".mrkdwn.j2": "slack", ".header.j2": "mail_header",
                    ".sql.j2": "sql", ".txt.j2": "text"}
CHANNELS = tuple(CHANNEL_SUFFIXES.values())

# Filter name -> (escaper, the channel whose environment takes its output as final).
ESCAPERS: dict[str, tuple[Callable[[Any], str], str | None]] = {
    "html": (escaping.html, "html"),
    "slack": (escaping.slack, "slack"),
    "markdown": (escaping.markdown, "markdown"),
    "csv_cell": (escaping.csv_cell, None),
    "sql_literal": (escaping.sql_literal, "sql"),
    "mail_header": (escaping.mail_header, "mail_header"),
}


def _rendered(function: Callable[..., str]) -> Callable[..., Markup]:
    """The function's text marked as rendered (final) for the environment it is registered on."""
    def wrapper(*args: Any, **kwargs: Any) -> Markup:
        return Markup(function(*args, **kwargs))
    wrapper.__name__ = function.__name__
    return wrapper


# Numbers and dates in words hold no names: their text is final in every channel.
FORMATTERS = {name: _rendered(getattr(formatting, name)) for name in (
    "money", "signed_money", "share", "share_with_interval", "signed_share", "points", "count", "long_day",
    "short_day", "coverage")}


def _format_spec(value: Any, spec: str) -> Any:
    """Python's format mini-language (`{{ ratio|fmt(".1f") }}`): a number comes out rendered; None stays None."""
    if value is None:
        return None
    text = format(value, spec)
    return Markup(text) if isinstance(value, int | float) else text


def _is_rendered(value: Any) -> bool:
    return hasattr(value, "__html__")


def _escaping_finalize(escape: Callable[[Any], str], none: str | None) -> Callable[[Any], Any]:
    """Finalize for a non-HTML channel: rendered values pass, numbers stay, every other value is escaped."""
    def finalize(value: Any) -> Any:
        if value is None and none is not None:
            return none
        if _is_rendered(value) or (isinstance(value, int | float) and not isinstance(value, bool)):
            return value
        return escape(value)
    return finalize


def _html_finalize(value: Any) -> Any:
    """None reads as a dash; autoescape does the rest."""
    return formatting.DASH if value is None else value


_FINALIZE: dict[str, Callable[[Any], Any] | None] = {
    "html": _html_finalize,
    "markdown": _escaping_finalize(escaping.markdown, formatting.DASH),
    "slack": _escaping_finalize(escaping.slack, None),
    "mail_header": _escaping_finalize(escaping.mail_header, None),
    "sql": _escaping_finalize(escaping.sql_literal, None),
    "text": None,
}


@cache
def environment(channel: str) -> Environment:
    """The channel's environment (built once): its escaping by default, the filters, StrictUndefined."""
    if channel not in _FINALIZE:
        raise ValueError(f"unknown output channel {channel!r}; known: {', '.join(CHANNELS)}")
    env = Environment(
        loader=PackageLoader("openrouter_spend", "templates"),
        autoescape=channel == "html",
        finalize=_FINALIZE[channel],
        undefined=StrictUndefined,
        # Documents (a page, a Markdown file) end with a line break; a message or a header line does not.
        keep_trailing_newline=channel in ("html", "markdown"),
        extensions=["jinja2.ext.do"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # An escaper's output is final in its own channel only: in another channel it is text to escape again
    # (a SQL literal quoted in Markdown is still Markdown-escaped).
    env.filters.update({name: _rendered(escape) if own == channel else escape
                        for name, (escape, own) in ESCAPERS.items()})
    env.filters.update(FORMATTERS)
    env.filters["fmt"] = _format_spec
    return env


def channel_of(template: str) -> str:
    """The output channel a template writes, from the end of its name."""
    for suffix, channel in CHANNEL_SUFFIXES.items():
        if template.endswith(suffix):
            return channel
    raise ValueError(f"template {template!r} names no output channel: its name ends with one of "
                     f"{', '.join(CHANNEL_SUFFIXES)}")


def render(template: str, **context: Any) -> str:
    """The named template rendered in its channel's environment."""
    return environment(channel_of(template)).get_template(template).render(**context)


def render_blocks(template: str, names: tuple[str, ...], **context: Any) -> dict[str, str]:
    """Named blocks of one template, each rendered on its own (a headline and the lines of an alert)."""
    loaded = environment(channel_of(template)).get_template(template)
    return {name: "".join(loaded.blocks[name](loaded.new_context(context))) for name in names}


def has_template(template: str) -> bool:
    """Whether the package ships the template."""
    try:
        environment(channel_of(template)).get_template(template)
    except TemplateNotFound:
        return False
    return True


def templates() -> list[str]:
    """Every template the package ships (for tests and checks)."""
    return environment("text").list_templates(filter_func=lambda name: name.endswith(tuple(CHANNEL_SUFFIXES)))
