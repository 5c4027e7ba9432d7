"""A report as a list of blocks, written as Markdown and as self-contained HTML.

The HTML carries its own stylesheet and refers only to the PNG files beside it; neither
output needs anything beyond the standard library.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str
    note: bool = False  # rendered as an aside (a figure that was skipped, a caveat)


@dataclass
class Image:
    file: str
    caption: str
    alt: str = ""


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    align_right: list[bool] = field(default_factory=list)


@dataclass
class BulletList:
    items: list[str]


Block = Heading | Paragraph | Image | Table | BulletList


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Paragraph):
            out += [("> " if b.note else "") + b.text, ""]
        elif isinstance(b, Image):
            out += [f"![{_md_cell(b.alt or b.file)}]({b.file})", "", f"*{b.caption}*", ""]
        elif isinstance(b, Table):
            right = b.align_right or [False] * len(b.header)
            out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
            out.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif isinstance(b, BulletList):
            out += [f"- {item}" for item in b.items]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1200px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .15em; margin-top: 2em; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .92em; color: #444; margin-top: .3em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; }
th { background: #f5f5f5; }
td.r { text-align: right; font-variant-numeric: tabular-nums; }
blockquote { margin: .8em 0; padding: .4em .9em; border-left: 4px solid #c9c9c9; background: #fafafa; color: #444; }
code { background: #f3f3f3; padding: 0 .2em; }
nav ul { columns: 2; }
"""


def _inline(text: str) -> str:
    """Escape HTML, then turn Markdown ``code`` spans into <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _anchor(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def to_html(blocks: list[Block], title: str) -> str:
    body: list[str] = []
    toc = [b for b in blocks if isinstance(b, Heading) and b.level == 2]
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f'<h{b.level} id="{_anchor(b.text)}">{_inline(b.text)}</h{b.level}>')
            if b.level == 1 and toc:
                items = "".join(f'<li><a href="#{_anchor(h.text)}">{_inline(h.text)}</a></li>' for h in toc)
                body.append(f"<nav><ul>{items}</ul></nav>")
        elif isinstance(b, Paragraph):
            body.append(f"<blockquote>{_inline(b.text)}</blockquote>" if b.note else f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Image):
            body.append(
                f'<figure><a href="{html.escape(b.file)}"><img src="{html.escape(b.file)}" '
                f'alt="{html.escape(b.alt or b.file)}"></a><figcaption>{_inline(b.caption)}</figcaption></figure>'
            )
        elif isinstance(b, Table):
            right = b.align_right or [False] * len(b.header)
            head = "".join(f"<th>{_inline(h)}</th>" for h in b.header)
            rows = "".join(
                "<tr>" + "".join(f'<td class="r">{_inline(c)}</td>' if r else f"<td>{_inline(c)}</td>"
                                 for c, r in zip(row, right, strict=True)) + "</tr>"
                for row in b.rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(b, BulletList):
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
