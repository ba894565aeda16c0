"""markup.py - the text of header comments and docs pages, as blocks, and
their rendering to HTML and to roff (man(7)).

Two sources, one block model:
  parse_comment()   a header comment: paragraphs split by blank lines,
                    `- ` bullets (continued by indented lines), lines
                    indented 2 as `TERM  text` definitions (cf_future_result's
                    "Returns:" list), lines indented 4 or more as code.
  parse_markdown()  the subset of Markdown the docs pages use: `#` headings,
                    paragraphs, `-`/`1.` lists, fenced code, pipe tables,
                    and inline `code`, **bold**, *emphasis*, [links](url),
                    ![images](src).
Blocks are tuples: ("p", text), ("h", level, text), ("ul", [text]),
("ol", [text]), ("dl", [(term, text)]), ("code", text), ("table", head,
rows). Inline text stays source text until a renderer formats it, so
API names can become links (HTML) or bold (roff).
"""
import html
import re

WORD = re.compile(r"\b(cf_\w+|CF_\w+)\b(\(\))?")


def slug(text):
    s = re.sub(r"[`*]", "", text.lower())
    return re.sub(r"[^a-z0-9_]+", "-", s).strip("-") or "section"


# ---------------------------------------------------------------- parsing

def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def parse_comment(text):
    blocks, para = [], []
    lines = text.split("\n")

    def flush():
        if para:
            blocks.append(("p", " ".join(s.strip() for s in para)))
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        ind = indent_of(line)
        if not line.strip():
            flush()
            i += 1
        elif ind >= 4:
            flush()
            code = []
            while i < len(lines) and (indent_of(lines[i]) >= 4
                                      or not lines[i].strip()):
                code.append(lines[i])
                i += 1
            while code and not code[-1].strip():
                code.pop()
            base = min(indent_of(c) for c in code if c.strip())
            blocks.append(("code", "\n".join(c[base:] for c in code)))
        elif line.startswith("- ") and ind == 0:
            flush()
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                item = [lines[i][2:]]
                i += 1
                while (i < len(lines) and lines[i].strip()
                       and indent_of(lines[i]) >= 2):
                    item.append(lines[i])
                    i += 1
                items.append(" ".join(s.strip() for s in item))
                if i < len(lines) and not lines[i].strip() and \
                        i + 1 < len(lines) and lines[i + 1].startswith("- "):
                    i += 1  # a blank line between items keeps the list
            blocks.append(("ul", items))
        elif 2 <= ind < 4 and re.match(r"\s*\S+\s+\S", line):
            flush()
            items = []
            while i < len(lines) and lines[i].strip() and \
                    indent_of(lines[i]) >= 2:
                if 2 <= indent_of(lines[i]) < 4:
                    term, _, rest = lines[i].strip().partition(" ")
                    items.append([term, rest.strip()])
                else:
                    items[-1][1] += " " + lines[i].strip()
                i += 1
            blocks.append(("dl", [tuple(x) for x in items]))
        else:
            para.append(line)
            i += 1
    flush()
    return blocks


def parse_markdown(text):
    blocks, para = [], []
    lines = text.split("\n")

    def flush():
        if para:
            blocks.append(("p", " ".join(s.strip() for s in para)))
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if s.startswith("<!--"):
            flush()
            while "-->" not in lines[i]:
                i += 1
            i += 1
        elif not s:
            flush()
            i += 1
        elif s.startswith("```"):
            flush()
            code = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                code.append(lines[i])
                i += 1
            i += 1
            blocks.append(("code", "\n".join(code)))
        elif re.match(r"#{1,6} ", s):
            flush()
            level = len(s) - len(s.lstrip("#"))
            blocks.append(("h", level, s[level:].strip()))
            i += 1
        elif s.startswith("|") and i + 1 < len(lines) and \
                re.match(r"^\|?\s*:?-{3,}", lines[i + 1].strip()):
            flush()
            head = table_cells(s)
            i += 2
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(table_cells(lines[i].strip()))
                i += 1
            blocks.append(("table", head, rows))
        elif re.match(r"([-*]|\d+\.) ", s) and not para:
            ordered = s[0].isdigit()
            items = []
            while i < len(lines) and re.match(r"\s*([-*]|\d+\.) ",
                                              lines[i]):
                item = [re.sub(r"^\s*([-*]|\d+\.) ", "", lines[i])]
                i += 1
                while (i < len(lines) and lines[i].strip()
                       and indent_of(lines[i]) >= 2
                       and not re.match(r"\s*([-*]|\d+\.) ", lines[i])):
                    item.append(lines[i])
                    i += 1
                items.append(" ".join(x.strip() for x in item))
                if (i + 1 < len(lines) and not lines[i].strip()
                        and re.match(r"\s*([-*]|\d+\.) ", lines[i + 1])):
                    i += 1
            blocks.append(("ol" if ordered else "ul", items))
        else:
            para.append(line)
            i += 1
    flush()
    return blocks


def table_cells(line):
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    cells, cur, code = [], "", False
    for ch in line:  # a | inside `code` is not a cell border
        if ch == "`":
            code = not code
        if ch == "|" and not code:
            cells.append(cur.strip())
            cur = ""
        else:
            cur += ch
    cells.append(cur.strip())
    return cells


# ------------------------------------------------------------ inline text

INLINE_MD = re.compile(
    r"(?P<code>`[^`]+`)"
    r"|(?P<img>!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\))"
    r"|(?P<link>\[(?P<ltext>[^\]]+)\]\((?P<href>[^)\s]+)\))"
    r"|(?P<bold>\*\*(?P<btext>.+?)\*\*)"
    r"|(?P<em>(?<![\w*])\*(?=\S)(?P<etext>[^*]+?)(?<=\S)\*(?![\w*]))")
INLINE_C = re.compile(r"(?P<code>`[^`]+`)")


def inline_tokens(text, markdown):
    pattern = INLINE_MD if markdown else INLINE_C
    pos = 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            yield ("text", text[pos:m.start()])
        kind = m.lastgroup if m.lastgroup in ("code",) else next(
            k for k in ("code", "img", "link", "bold", "em") if m.group(k))
        if kind == "code":
            yield ("code", m.group("code")[1:-1])
        elif kind == "img":
            yield ("img", m.group("alt"), m.group("src"))
        elif kind == "link":
            yield ("link", m.group("ltext"), m.group("href"))
        elif kind == "bold":
            yield ("bold", m.group("btext"))
        else:
            yield ("em", m.group("etext"))
        pos = m.end()
    if pos < len(text):
        yield ("text", text[pos:])


class Html:
    """Renders blocks to HTML. `link(name)` gives the URL of an API name's
    entry, or None for a name the reference does not have."""

    def __init__(self, link, markdown, ids=None):
        self.link, self.markdown = link, markdown
        self.ids = set() if ids is None else ids  # ids taken on the page

    def unique(self, ident):
        """`ident`, or `ident-2`, `-3`... if the page has it already."""
        out, n = ident, 1
        while out in self.ids:
            n += 1
            out = f"{ident}-{n}"
        self.ids.add(out)
        return out

    def names(self, text, in_code=False):
        out, pos = [], 0
        for m in WORD.finditer(text):
            url = self.link(m.group(1))
            if url is None:
                continue
            out.append(html.escape(text[pos:m.start()], quote=False))
            label = html.escape(m.group(0), quote=False)
            out.append(f'<a href="{url}">{label}</a>')
            pos = m.end()
        out.append(html.escape(text[pos:], quote=False))
        return "".join(out)

    def inline(self, text):
        out = []
        for tok in inline_tokens(text, self.markdown):
            kind = tok[0]
            if kind == "text":
                out.append(self.names(tok[1]))
            elif kind == "code":
                out.append(f"<code>{self.names(tok[1], True)}</code>")
            elif kind == "img":
                out.append(f'<img src="{html.escape(tok[2])}" '
                           f'alt="{html.escape(tok[1])}">')
            elif kind == "link":
                out.append(f'<a href="{html.escape(tok[2])}">'
                           f"{self.inline_plain(tok[1])}</a>")
            elif kind == "bold":
                out.append(f"<strong>{self.inline(tok[1])}</strong>")
            else:
                out.append(f"<em>{self.inline(tok[1])}</em>")
        return "".join(out)

    def inline_plain(self, text):
        """Inline formatting without links (for a link's own text)."""
        out = []
        for tok in inline_tokens(text, self.markdown):
            if tok[0] == "code":
                out.append(f"<code>{html.escape(tok[1], quote=False)}</code>")
            else:
                out.append(html.escape(tok[1] if len(tok) == 2 else tok[1],
                                       quote=False))
        return "".join(out)

    def code(self, text):
        return self.names(text, True)

    def blocks(self, blocks, heading_offset=0):
        out = []
        for b in blocks:
            kind = b[0]
            if kind == "p":
                out.append(f"<p>{self.inline(b[1])}</p>")
            elif kind == "h":
                level = min(6, b[1] + heading_offset)
                out.append(f'<h{level} id="{self.unique(slug(b[2]))}">'
                           f"{self.inline(b[2])}</h{level}>")
            elif kind in ("ul", "ol"):
                items = "".join(f"<li>{self.inline(t)}</li>" for t in b[1])
                out.append(f"<{kind}>{items}</{kind}>")
            elif kind == "dl":
                items = "".join(
                    f"<dt><code>{self.names(t)}</code></dt>"
                    f"<dd>{self.inline(d)}</dd>" for t, d in b[1])
                out.append(f"<dl>{items}</dl>")
            elif kind == "code":
                out.append(f"<pre><code>{self.code(b[1])}</code></pre>")
            elif kind == "table":
                head = "".join(f"<th>{self.inline(c)}</th>" for c in b[1])
                rows = "".join(
                    "<tr>" + "".join(f"<td>{self.inline(c)}</td>"
                                     for c in r) + "</tr>" for r in b[2])
                out.append(f'<div class="table"><table><thead><tr>{head}'
                           f"</tr></thead><tbody>{rows}</tbody></table></div>")
        return "\n".join(out)


# ------------------------------------------------------------------- roff

def roff_escape(text):
    out = []
    for ch in text.replace("\\", "\\e"):
        out.append(ch if ord(ch) < 128 else f"\\[u{ord(ch):04X}]")
    return "".join(out)


SENTENCE_END = re.compile(r"(?<=[A-Za-z0-9)'\"\]][.!?]) +(?=[A-Z(\\])")


def roff_lines(text, width=80):
    """Text lines for roff: a sentence a line and at most `width` bytes
    (mandoc's style checks), none starting with a control character."""
    out = []
    for sentence in SENTENCE_END.split(text.strip()):
        for line in fold(sentence.strip(), width):
            out.append("\\&" + line if line[0] in ".'" else line)
    return out


def fold(text, width):
    """Splits at spaces so each line has at most `width` bytes (a word
    longer than that stays whole). A line break is a space in fill mode."""
    lines, cur = [], ""
    for word in text.split():
        if cur and len((cur + " " + word).encode()) > width:
            lines.append(cur)
            cur = word
        else:
            cur = cur + " " + word if cur else word
    if cur:
        lines.append(cur)
    return lines


class Roff:
    """Renders blocks to man(7) requests. `known(name)` says whether an
    API name has a man page (set in bold)."""

    def __init__(self, known, markdown):
        self.known, self.markdown = known, markdown

    def names(self, text):
        out, pos = [], 0
        for m in WORD.finditer(text):
            if not (m.group(2) and self.known(m.group(1))):
                continue
            out.append(roff_escape(text[pos:m.start()]))
            out.append(f"\\fB{m.group(1)}\\fP()")
            pos = m.end()
        out.append(roff_escape(text[pos:]))
        return "".join(out)

    def inline(self, text):
        out = []
        for tok in inline_tokens(text, self.markdown):
            kind = tok[0]
            if kind == "text":
                out.append(self.names(tok[1]))
            elif kind == "code":
                c = tok[1]
                esc = roff_escape(c).replace("-", "\\-")
                if re.fullmatch(r"\**[a-z_][a-z0-9_]*", c) and \
                        not self.known(c.lstrip("*")):
                    out.append(f"\\fI{esc}\\fP")   # a parameter
                else:
                    out.append(f"\\fB{esc}\\fP")
            elif kind == "img":
                continue
            elif kind == "link":
                label = self.inline(tok[1])
                url = tok[2]
                out.append(f"{label} <{roff_escape(url)}>"
                           if re.match(r"https?:", url) else label)
            elif kind == "bold":
                out.append(f"\\fB{self.inline(tok[1])}\\fP")
            else:
                out.append(f"\\fI{self.inline(tok[1])}\\fP")
        return "".join(out)

    def blocks(self, blocks, first=True):
        """Requests for `blocks`; `first`: right after .SH/.SS, where a
        paragraph needs no .PP."""
        out = []
        for b in blocks:
            kind = b[0]
            if kind == "p":
                if not first:
                    out.append(".PP")
                out += roff_lines(self.inline(b[1]))
            elif kind == "h":
                req = ".SH" if b[1] <= 1 else ".SS"
                out.append(f'{req} "{roff_escape(strip_inline(b[2]))}"')
                first = True
                continue
            elif kind in ("ul", "ol"):
                for n, item in enumerate(b[1], 1):
                    tag = "\\(bu" if kind == "ul" else f"{n}."
                    out.append(f".IP {tag} 4")
                    out += roff_lines(self.inline(item))
            elif kind == "dl":
                for term, text in b[1]:
                    out.append(".TP")
                    out.append(f"\\fB{roff_escape(term)}\\fP")
                    out += roff_lines(self.inline(text))
            elif kind == "code":
                out += [".PP" if not first else ".sp", ".RS 4", ".EX"]
                out += [roff_code_line(x) for x in b[1].split("\n")]
                out += [".EE", ".RE"]
            elif kind == "table":
                for row in b[2]:
                    out.append(".TP")
                    out += roff_lines(self.inline(row[0]))
                    rest = [f"{strip_inline(h)}: {c}" if h else c
                            for h, c in zip(b[1][1:], row[1:]) if c]
                    out += roff_lines(self.inline("; ".join(rest)))
            first = False
        return out


def roff_code_line(line):
    esc = roff_escape(line).replace("-", "\\-")
    return "\\&" + esc if esc[:1] in (".", "'") else esc


def strip_inline(text):
    return re.sub(r"[`*]", "", re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text))
