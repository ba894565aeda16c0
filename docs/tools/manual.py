"""manual.py - the HTML manual: static pages, one stylesheet, no script,
nothing loaded from outside, so it reads offline from docs/html/.

Pages and where they come from:
  index.html        docs/manual/index.md, then the list of parts
  tour.html         docs/manual/tour.md (Python call -> C call)
  model.html        docs/manual/model.md, then the header's conventions
  <part>.html       docs/manual/parts/NN-<part>.md, then the reference of
                    the header sections it claims (`<!-- sections: A; B -->`)
  <section>.html    a header section no part claims: its reference alone,
                    so new API shows up before anyone writes its guide
  examples.html     examples/README.md, then each program's page
  example-<n>.html  examples/<n>.c (and <n>-py.html for <n>.py), every
                    API name linked to its entry
  reference.html    every name, A to Z
  <doc>.html        docs/<DOC>.md (RELIABILITY.md -> reliability.html)
  benchmarks.html   bench/RESULTS.md and the charts in bench/charts/
"""
import glob
import html
import os
import re
import shutil

import markup
from api import type_source
from headerdoc import Group, Note, section_key

FIXED = ("index", "tour", "model", "examples", "reference", "benchmarks")


def esc(text):
    return html.escape(text, quote=True)


def read(path):
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as fp:
        return fp.read()


def md_title(text, default):
    m = re.search(r"^# (.+)$", text, re.M)
    return m.group(1).strip() if m else default


def md_summary(text):
    """The first paragraph after the title, for index lists."""
    for b in markup.parse_markdown(text):
        if b[0] == "p":
            return b[1]
    return ""


def md_claims(text):
    m = re.search(r"<!--\s*sections:\s*(.*?)-->", text, re.S)
    if not m:
        return []
    return [section_key(x) for x in m.group(1).split(";") if x.strip()]


def example_page(filename):
    """examples/fetch_pages.c -> example-fetch_pages.html; a .py file
    gets -py (event_loop.c and event_loop.py may both exist)."""
    stem, ext = os.path.splitext(filename)
    return f"example-{stem}{'' if ext == '.c' else '-' + ext[1:]}.html"


def part_order(path):
    """Parts go by their number (90-... before 100-...), then by name."""
    name = os.path.basename(path)
    m = re.match(r"(\d+)-", name)
    return (int(m.group(1)) if m else float("inf"), name)


def strip_title(text):
    return re.sub(r"^# .+\n", "", text, count=1, flags=re.M)


class Part:
    def __init__(self, slug, title, text, sections):
        self.slug, self.title, self.text = slug, title, text
        self.sections = sections  # header Sections, in header order


class Manual:
    def __init__(self, api, root):
        self.api, self.root = api, root
        self.parts, self.extra_sections = self.find_parts()
        self.url = {}   # API name -> "page.html#name"
        for part in self.parts + self.extra_sections:
            for s in part.sections:
                for g in s.groups:
                    for d in g.decls:
                        self.url.setdefault(d.name, f"{part.slug}.html#{d.name}")
                        for f in d.fields if d.kind == "enum" else ():
                            if "(" in f.name:
                                continue
                            self.url.setdefault(f.name,
                                                f"{part.slug}.html#{f.name}")
        errors_page = next((p for p in self.parts + self.extra_sections
                            if any(g.decls[0].rows for s in p.sections
                                   for g in s.groups)), None)
        for code in api.codes:
            if errors_page:
                self.url.setdefault(code, f"{errors_page.slug}.html#{code}")
        self.examples = sorted(
            p for ext in ("c", "py")
            for p in glob.glob(os.path.join(root, "examples", "*." + ext)))
        self.docs = sorted(p for p in glob.glob(os.path.join(root, "docs",
                                                             "*.md"))
                           if os.path.basename(p) != "README.md")
        self.ids = set()  # ids on the page being made, shared by both
        self.html_c = markup.Html(self.link, markdown=False, ids=self.ids)
        self.html_md = markup.Html(self.link, markdown=True, ids=self.ids)

    def link(self, name):
        return self.url.get(name)

    def claim(self, ident):
        """An API name's id: it must be free, since links point to it."""
        if ident in self.ids:
            raise SystemExit(f"cfdoc: two entries on one page are named "
                             f"{ident!r}")
        self.ids.add(ident)
        return ident

    def find_parts(self):
        """Hand-written parts in file order, each with the sections it
        claims; then a page per section nobody claims."""
        sections = self.api.sections()
        claimed, parts = set(), []
        for path in sorted(glob.glob(os.path.join(self.root, "docs",
                                                  "manual", "parts",
                                                  "*.md")), key=part_order):
            text = read(path)
            slug = re.sub(r"^\d+-", "", os.path.basename(path)[:-3])
            keys = md_claims(text)
            mine = [s for s in sections if s.key in keys
                    and id(s) not in claimed]
            claimed.update(id(s) for s in mine)
            parts.append(Part(slug, md_title(text, slug), text, mine))
        taken = set(FIXED) | {p.slug for p in parts}
        extra = []
        for s in sections:
            if id(s) in claimed:
                continue
            base = slug = markup.slug(s.key)
            n = 1
            while slug in taken:  # a fixed page's name, or another header's
                n += 1
                slug = f"{base}-{n}"
            taken.add(slug)
            extra.append(Part(slug, s.title, "", [s]))
        return parts, extra

    # ------------------------------------------------------------ layout

    def nav(self, current):
        def item(href, label):
            cls = ' class="here"' if href == current else ""
            return f'<li><a href="{href}"{cls}>{esc(label)}</a></li>'

        out = ['<nav class="side"><p class="brand"><a href="index.html">'
               'cfutures</a></p><ul>',
               item("index.html", "Overview"),
               item("tour.html", "Tour for Python programmers"),
               item("model.html", "The model"),
               "</ul><p>Parts</p><ul>"]
        out += [item(f"{p.slug}.html", p.title) for p in self.parts]
        if self.extra_sections:
            out.append("</ul><p>More of the API</p><ul>")
            out += [item(f"{p.slug}.html", p.title.split(":")[0])
                     for p in self.extra_sections]
        out.append("</ul><p>Look-ups</p><ul>")
        out.append(item("examples.html", "Examples"))
        out.append(item("reference.html", "Index A\u2013Z"))
        for path in self.docs:
            out.append(item(self.doc_slug(path) + ".html",
                            md_title(read(path), self.doc_slug(path))
                            .split(":")[0]))
        if os.path.exists(os.path.join(self.root, "bench", "RESULTS.md")):
            out.append(item("benchmarks.html", "Benchmarks"))
        out.append("</ul></nav>")
        return "\n".join(out)

    def page(self, name, title, body):
        self.ids.clear()  # the next page starts with no ids taken
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
            '<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, '
            'initial-scale=1">\n'
            f"<title>{esc(title)} \u2014 cfutures manual</title>\n"
            '<link rel="icon" href="data:,">\n'
            '<link rel="stylesheet" href="style.css">\n</head>\n<body>\n'
            f"{self.nav(name)}\n<main>\n{body}\n</main>\n</body>\n</html>\n")

    def markdown(self, text, drop_title=True):
        if drop_title:
            text = strip_title(text)
        return self.html_md.blocks(markup.parse_markdown(text))

    # --------------------------------------------------------- reference

    def entry(self, g):
        """One group: its declarations, comment, notes and fields."""
        names = g.names
        out = [f'<section class="entry" id="{esc(self.claim(names[0]))}">']
        out += [f'<span id="{esc(self.claim(n))}"></span>' for n in names[1:]]
        label = ", ".join(f"<code>{esc(n)}</code>" for n in names)
        out.append(f"<h3>{label}</h3>")
        decls = []
        for d in g.decls:
            decls += type_source(d) if d.kind != "table" else [
                f"#define {d.name}(XX) ..."]
        out.append('<pre class="decl"><code>'
                   + self.html_c.code("\n".join(decls)) + "</code></pre>")
        if g.doc:
            out.append(self.html_c.blocks(markup.parse_comment(g.doc)))
        notes = [(d.name, d.note) for d in g.decls if d.note]
        if notes:
            out.append(self.html_c.blocks([("dl", notes)]))
        for d in g.decls:
            out.append(self.fields(d))
            if d.rows:
                out.append(self.error_table(d))
        if g.functions:
            page = self.api.page_name(g)
            out.append(f'<p class="man">man 3 {esc(page)}</p>')
        out.append("</section>")
        return "\n".join(x for x in out if x)

    def fields(self, d):
        items = [f for f in d.fields if f.doc or d.kind == "enum"]
        if not items:
            return ""
        rows = []
        for f in items:
            ident = ""
            if d.kind == "enum" and "(" not in f.name:
                ident = f' id="{esc(self.claim(f.name))}"'
            doc = self.html_c.blocks(markup.parse_comment(f.doc)) \
                if f.doc else ""
            rows.append(f"<dt{ident}><code>{esc(f.name)}</code></dt>"
                        f"<dd>{doc}</dd>")
        return f'<dl class="fields">{"".join(rows)}</dl>'

    def error_table(self, d):
        rows = []
        for name, value, msg, note in d.rows:
            code = "CF_" + name
            rows.append(f'<tr id="{esc(self.claim(code))}"><td><code>'
                        f"{esc(code)}</code>"
                        f"</td><td>{esc(value)}</td><td>{esc(msg)}</td>"
                        f"<td>{esc(note)}</td></tr>")
        return ('<div class="table"><table><thead><tr><th>code</th>'
                "<th>value</th><th>cf_strerror()</th><th>Python</th></tr>"
                f"</thead><tbody>{''.join(rows)}</tbody></table></div>")

    def section_body(self, s, heading=True):
        out = []
        if heading:
            rel = os.path.relpath(s.header.path, self.root)
            ident = self.html_c.unique(markup.slug(s.title))
            out.append(f'<h2 id="{ident}">'
                       f"{esc(s.title)}"
                       f'</h2>\n<p class="src">From <code>{esc(rel)}</code>.'
                       "</p>")
        if s.intro:
            out.append('<div class="intro">' + self.html_c.blocks(
                markup.parse_comment(s.intro)) + "</div>")
        for item in s.items:
            if isinstance(item, Note):
                out.append('<div class="note">' + self.html_c.blocks(
                    markup.parse_comment(item.doc)) + "</div>")
            elif isinstance(item, Group):
                out.append(self.entry(item))
        return "\n".join(out)

    def part_page(self, part):
        body = [f"<h1>{esc(part.title)}</h1>"]
        if part.text:
            body.append(self.markdown(part.text))
            if part.sections:
                body.append('<h2 id="reference">Reference</h2>')
                for s in part.sections:
                    body.append(self.section_body(s))
        else:
            s = part.sections[0]
            rel = os.path.relpath(s.header.path, self.root)
            body.append(f'<p class="src">From <code>{esc(rel)}</code>. '
                        "No guide is written for this part yet: this is "
                        "its reference, as the header states it.</p>")
            body.append(self.section_body(s, heading=False))
        used = self.examples_using(part)
        if used:
            links = ", ".join(
                f'<a href="{example_page(n)}"><code>{esc(n)}</code></a>'
                for n in used)
            body.append(f'<h2 id="examples">Examples</h2><p>Programs that '
                        f"use this part: {links}.</p>")
        return self.page(f"{part.slug}.html", part.title, "\n".join(body))

    def examples_using(self, part):
        names = {d.name for s in part.sections for g in s.groups
                 for d in g.decls if d.api}
        out = []
        for path in self.examples:
            words = set(re.findall(r"\bcf_\w+", read(path)))
            if words & names:
                out.append(os.path.basename(path))
        return out

    # ------------------------------------------------------------ pages

    def index_page(self):
        text = read(os.path.join(self.root, "docs", "manual", "index.md"))
        body = [f"<h1>{esc(md_title(text, 'cfutures'))}</h1>",
                self.markdown(text), '<h2 id="parts">Parts</h2>', "<dl>"]
        for p in self.parts:
            summary = md_summary(strip_title(p.text))
            body.append(f'<dt><a href="{p.slug}.html">{esc(p.title)}</a>'
                        f"</dt><dd>{self.html_md.inline(summary)}</dd>")
        for p in self.extra_sections:
            body.append(f'<dt><a href="{p.slug}.html">{esc(p.title)}</a>'
                        "</dt><dd>Reference only.</dd>")
        body.append("</dl>")
        body.append('<h2 id="more">Also here</h2><ul>'
                    '<li><a href="tour.html">Tour</a>: each Python call '
                    "and its C counterpart.</li>"
                    '<li><a href="model.html">The model</a>: futures, '
                    "executors, ownership, errors; the conventions every "
                    "function follows (also <code>man 7 cfutures</code>)."
                    "</li>"
                    '<li><a href="examples.html">Examples</a>: the Python '
                    "documentation's examples in C, with their source.</li>"
                    '<li><a href="reference.html">Index A\u2013Z</a>: every '
                    "function, type and constant. Each function also has a "
                    "man page: <code>man cf_future_result</code>.</li></ul>")
        return self.page("index.html", "Overview", "\n".join(body))

    def text_page(self, name, path, title_default, tail=""):
        text = read(path)
        title = md_title(text, title_default)
        body = f"<h1>{esc(title)}</h1>\n{self.markdown(text)}\n{tail}"
        return self.page(name, title, body)

    def model_page(self):
        main = self.api.headers[0]
        intro = markup.parse_comment(main.intro)
        if intro and intro[0][0] == "p" and " - " in intro[0][1]:
            intro = intro[1:]
        tail = ('<h2 id="conventions">Conventions, as '
                f"<code>{esc(main.name)}</code> states them</h2>\n"
                + self.html_c.blocks(intro))
        return self.text_page("model.html", os.path.join(
            self.root, "docs", "manual", "model.md"), "The model", tail)

    def examples_page(self):
        text = read(os.path.join(self.root, "examples", "README.md"))
        files = [os.path.basename(p) for p in self.examples]
        for f in files:
            text = text.replace(f"`{f}`", f"[`{f}`]({example_page(f)})")
        missing = [f for f in files if example_page(f) not in text]
        body = [f"<h1>{esc(md_title(text, 'Examples'))}</h1>",
                self.markdown(text)]
        if missing:
            body.append('<h2 id="more-programs">More programs</h2><ul>')
            for f in missing:
                body.append(f'<li><a href="{example_page(f)}"><code>{esc(f)}'
                            f"</code></a>: {esc(self.example_summary(f))}"
                            "</li>")
            body.append("</ul>")
        return self.page("examples.html", "Examples", "\n".join(body))

    def example_summary(self, filename):
        """What the file's opening comment or docstring says after
        `name - `, up to its first blank line."""
        src = read(os.path.join(self.root, "examples", filename))
        m = re.match(r'\s*(?:/\*|"""|#)\s*\S+\s+-\s+(.*?)(?:\n\s*\*?\s*\n|\*/|""")',
                     src, re.S)
        if not m:
            return ""
        return " ".join(re.sub(r"\n\s*\*", " ", m.group(1)).split())

    def example_page(self, path):
        filename = os.path.basename(path)
        src = read(path)
        used = sorted({w for w in re.findall(r"\bcf_\w+", src)
                       if w in self.url})
        links = ", ".join(f'<a href="{self.url[w]}"><code>{w}</code></a>'
                          for w in used)
        run = ("Built and run by <code>make run</code>; exits 0 when every "
               "check passes." if filename.endswith(".c") else
               "Run by <code>ctest</code>; see its opening comment.")
        body = (f"<h1><code>examples/{esc(filename)}</code></h1>\n"
                f"<p>{esc(self.example_summary(filename))}</p>\n"
                f'<p>{run} <a href="examples.html">All examples</a>.</p>\n'
                + (f'<p class="src">Uses {links}.</p>\n' if links else "")
                + '<pre class="source"><code>' + self.html_c.code(src)
                + "</code></pre>")
        return self.page(example_page(filename), filename, body)

    def reference_page(self):
        rows = []
        for name in sorted(self.url, key=lambda n: (n.lower(), n)):
            d = self.api.decls.get(name)
            g = self.api.group_of.get(name)
            if d is not None:
                kind = d.kind
                summary = self.api.summary(g) if g and g.doc else ""
            elif name in self.api.codes:
                kind, summary = "error code", self.api.codes[name][1]
            else:
                kind, summary = "constant", ""
            man = ""
            if name in self.api.page_of:
                man = f"{self.api.page_name(self.api.page_of[name])}(3)"
            rows.append(f'<tr><td><a href="{self.url[name]}"><code>'
                        f"{esc(name)}</code></a></td><td>{esc(kind)}</td>"
                        f"<td>{esc(man)}</td><td>{esc(summary)}</td></tr>")
        body = ("<h1>Index A\u2013Z</h1>\n<p>Every name the public headers "
                "declare. The man page column names the page "
                "<code>man</code> shows for it (installed by "
                "<code>cmake --install</code> into "
                "<code>share/man</code>; <code>man 7 cfutures</code> is the "
                "overview).</p>\n"
                '<div class="table"><table><thead><tr><th>name</th>'
                "<th>kind</th><th>man page</th><th>summary</th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table></div>")
        return self.page("reference.html", "Index A\u2013Z", body)

    def doc_slug(self, path):
        return os.path.basename(path)[:-3].lower()


def write_all(api, root, out_dir):
    """Writes the manual into out_dir (replacing what a previous run left)
    and returns the number of pages."""
    m = Manual(api, root)
    pages = {"index.html": m.index_page(),
             "tour.html": m.text_page("tour.html", os.path.join(
                 root, "docs", "manual", "tour.md"), "Tour"),
             "model.html": m.model_page(),
             "examples.html": m.examples_page(),
             "reference.html": m.reference_page()}
    for part in m.parts + m.extra_sections:
        pages[f"{part.slug}.html"] = m.part_page(part)
    for path in m.examples:
        pages[example_page(os.path.basename(path))] = m.example_page(path)
    for path in m.docs:
        name = m.doc_slug(path) + ".html"
        pages[name] = m.text_page(name, path, m.doc_slug(path))
    results = os.path.join(root, "bench", "RESULTS.md")
    if os.path.exists(results):
        pages["benchmarks.html"] = m.text_page("benchmarks.html", results,
                                               "Benchmarks")
    marker = os.path.join(out_dir, ".cfdoc-manual")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not os.path.exists(marker):
            raise SystemExit(f"cfdoc: {out_dir} holds files this tool did "
                             "not write; give an empty or new folder")
        shutil.rmtree(out_dir)  # a previous manual: pages may be gone
    os.makedirs(out_dir, exist_ok=True)
    open(marker, "w").close()
    for name, text in pages.items():
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as fp:
            fp.write(text)
    shutil.copy(os.path.join(root, "docs", "manual", "style.css"), out_dir)
    charts = os.path.join(root, "bench", "charts")
    if os.path.isdir(charts):
        shutil.copytree(charts, os.path.join(out_dir, "charts"))
    return len(pages)
