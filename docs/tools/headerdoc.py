"""headerdoc.py - reads a public header's comments into a model of its API.

The header is the one source of the reference: the man pages and the HTML
manual are made from what this module reads. It understands the way
include/cfutures.h is written (docs/README.md states it for authors):

  Section   a banner, `/* ---- ... ---- */` on one line and `/* Title */`
            on the next, starts a section (a part of the manual). A comment
            right after the banner, followed by a blank line, is the
            section's introduction.
  Group     a comment that ends on the line just before a declaration
            documents it and every declaration that follows without a blank
            line: `cf_future_cancelled`, `_running` and `_done` share one
            comment and so one man page. A declaration without a comment
            above it is undocumented: fine for a type or a macro, an error
            for a function (`check` says which).
  Note      a comment followed by a blank line, later in a section, is a
            note: its text leads the groups that follow it.
  Trailing  a comment at the end of a declaration's line is a note on that
            name (`/* started, not done */`).
  Fields    in a struct or enum body, a comment above a field (or at the
            end of its line) documents that field.
  Table     an X-macro `#define NAME_MAP(XX)` whose rows are `XX(a, b, "c")`
            (with an optional `/* comment */` each) is read as a table.

Everything else (include guards, `extern "C"`, `#if` lines, the lines
before the first banner apart from the file's opening comment) is skipped.
Functions are the declarations that carry an export macro (CF_API, or any
`<PREFIX>_API`).
"""
import re

API_MACRO = re.compile(r"\b[A-Z][A-Z0-9_]*_API\b")
BANNER = re.compile(r"^/\*\s*-{8,}\s*\*/\s*$")
BANNER_TITLE = re.compile(r"^/\*\s*(.*?)\s*\*/\s*$")
IDENT = re.compile(r"[A-Za-z_]\w*")
# Attribute macros after a prototype: CF_PRINTF(3, 4), __attribute__((x)).
TRAILING_ATTR = re.compile(
    r"\)\s*((?:[A-Z][A-Z0-9_]*|__attribute__)\s*\((?:[^()]|\([^()]*\))*\)\s*)+;$")


class Decl:
    """One declared name. kind: function, variable, struct, enum, fnptr,
    typedef, opaque, macro, table, other."""

    def __init__(self, kind, name, source, line):
        self.kind, self.name, self.source, self.line = kind, name, source, line
        self.note = ""        # trailing comment
        self.fields = []      # Field, for struct and enum
        self.rows = []        # (name, value, message, note), for table
        self.api = kind in ("function", "variable")

    @property
    def signature(self):
        """The declaration as a user writes against it: export and attribute
        macros dropped, whitespace collapsed."""
        s = API_MACRO.sub("", self.source)
        s = TRAILING_ATTR.sub(");", s)
        return " ".join(s.split()).replace("( ", "(").replace(" )", ")")

    def __repr__(self):
        return f"Decl({self.kind} {self.name} @{self.line})"


class Field:
    def __init__(self, name, source, doc):
        self.name, self.source, self.doc = name, source, doc


class Group:
    """Declarations that share one comment: one man page, one HTML entry."""

    def __init__(self, doc, line, section):
        self.doc = doc          # comment text ("" when undocumented)
        self.line = line        # first line of the comment or declaration
        self.section = section
        self.decls = []
        self.lead = ""          # the note this group follows, if any

    @property
    def names(self):
        return [d.name for d in self.decls]

    @property
    def functions(self):
        return [d for d in self.decls if d.api]

    @property
    def anchor(self):
        return self.decls[0].name


class Note:
    def __init__(self, doc, line):
        self.doc, self.line = doc, line


class Section:
    def __init__(self, title, header, line):
        self.title, self.header, self.line = title, header, line
        self.intro = ""
        self.items = []         # Group and Note, in header order

    @property
    def groups(self):
        return [i for i in self.items if isinstance(i, Group)]

    @property
    def key(self):
        """What a manual page names to claim this section: the title up to
        a colon, lower case ("Codecs: how values cross ..." -> "codecs")."""
        return section_key(self.title)


def section_key(title):
    return " ".join(title.split(":")[0].lower().split())


class Header:
    def __init__(self, path, name):
        self.path, self.name = path, name  # name: as #include'd
        self.intro = ""
        self.sections = []
        self.api_lines = []     # (line, text) of every export macro use

    @property
    def groups(self):
        return [g for s in self.sections for g in s.groups]


def comment_text(lines):
    """The text of a block comment: `/*`, `*/` and the ` * ` margin gone,
    relative indentation kept (code is indented 4, definition lists 2)."""
    out = []
    for i, raw in enumerate(lines):
        s = raw.rstrip()
        if i == 0:
            s = s.lstrip()[2:]
            s = s[1:] if s.startswith(" ") else s
        else:
            s = s.lstrip()
            if s.startswith("*") and not s.startswith("*/"):
                s = s[1:]
                s = s[1:] if s.startswith(" ") else s
        if s.rstrip().endswith("*/"):
            s = s.rstrip()[:-2].rstrip()
        out.append(s.rstrip())
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out)


def split_trailing_comment(line):
    """`code; /* note */` -> ("code;", "note"). Only a comment that closes
    on this line counts."""
    m = re.search(r"/\*(.*?)\*/\s*\\?\s*$", line)
    if not m or line.lstrip().startswith("/*"):
        return line, ""
    return line[:m.start()].rstrip(), m.group(1).strip()


def strip_comments(text):
    return re.sub(r"/\*.*?\*/", " ", text, flags=re.S)


def depth_change(code):
    return (code.count("(") + code.count("{")
            - code.count(")") - code.count("}"))


class Parser:
    def __init__(self, text, path, name):
        self.lines = text.split("\n")
        self.header = Header(path, name)
        self.i = 0
        self.section = None
        self.pending = None     # (text, line) of a comment not yet placed
        self.group = None       # the group a following declaration joins
        self.note = ""          # the current note, leading later groups

    def parse(self):
        for n, line in enumerate(self.lines, 1):
            if API_MACRO.search(strip_comments(line)) and \
                    not line.lstrip().startswith("#"):
                self.header.api_lines.append((n, line.strip()))
        self.skip_preamble()
        while self.i < len(self.lines):
            self.step()
        self.place_pending(blank=True)
        return self.header

    def skip_preamble(self):
        """The file's opening comment is the header's introduction; the
        rest up to the first banner (guards, export macros) is plumbing."""
        while self.i < len(self.lines):
            s = self.lines[self.i].strip()
            if self.is_banner(self.i):
                return
            if s.startswith("/*") and not self.header.intro:
                self.header.intro = comment_text(self.read_comment())
                continue
            self.i += 1

    def is_banner(self, i):
        return (BANNER.match(self.lines[i].strip()) is not None
                and i + 1 < len(self.lines)
                and BANNER_TITLE.match(self.lines[i + 1].strip()) is not None
                and not BANNER.match(self.lines[i + 1].strip()))

    def read_comment(self):
        start = self.i
        while "*/" not in self.lines[self.i]:
            self.i += 1
        self.i += 1
        return self.lines[start:self.i]

    def place_pending(self, blank):
        """A comment not followed by a declaration: the section's intro if
        nothing came before it in the section, else a note."""
        if self.pending is None:
            return
        text, line = self.pending
        self.pending = None
        if self.section is None:
            return
        if not self.section.items and not self.section.intro:
            self.section.intro = text
        else:
            self.section.items.append(Note(text, line))
            self.note = text

    def step(self):
        line = self.lines[self.i]
        s = line.strip()
        if not s:
            self.place_pending(blank=True)
            self.group = None
            self.i += 1
        elif self.is_banner(self.i):
            self.place_pending(blank=True)
            title = BANNER_TITLE.match(self.lines[self.i + 1].strip()).group(1)
            self.section = Section(" ".join(title.split()), self.header,
                                   self.i + 1)
            self.header.sections.append(self.section)
            self.group, self.note = None, ""
            self.i += 2
        elif s.startswith("/*"):
            self.place_pending(blank=False)
            start = self.i + 1
            self.pending = (comment_text(self.read_comment()), start)
        elif s.startswith("#"):
            self.directive(s)
        else:
            start = self.i + 1
            stmt = self.read_statement()
            self.add(parse_statement(stmt, start), start)

    def directive(self, s):
        word = s[1:].strip().split(" ")[0] if len(s) > 1 else ""
        if word == "define":
            start = self.i + 1
            text = [self.lines[self.i]]
            while text[-1].rstrip().endswith("\\"):
                self.i += 1
                text.append(self.lines[self.i])
            self.i += 1
            decl = parse_define(text, start)
            if decl is not None:
                self.add(decl, start)
        elif word in ("ifdef", "if") and "__cplusplus" in s:
            depth = 0  # skip the extern "C" wrapper to its #endif
            while self.i < len(self.lines):
                t = self.lines[self.i].strip()
                if t.startswith("#if"):
                    depth += 1
                elif t.startswith("#endif"):
                    depth -= 1
                self.i += 1
                if depth == 0:
                    break
        else:
            # Other directives (#if, #endif, #include, #undef) neither
            # document nor end anything.
            while self.lines[self.i].rstrip().endswith("\\"):
                self.i += 1
            self.i += 1

    def read_statement(self):
        """Lines up to the `;` that ends the declaration, or the `}` that
        ends an inline function's body; comments kept (a struct's fields
        carry them)."""
        out, depth, in_comment, text = [], 0, False, ""
        while self.i < len(self.lines):
            line = self.lines[self.i]
            out.append(line)
            self.i += 1
            code, in_comment = code_part(line, in_comment)
            text += " " + code
            depth += depth_change(code)
            end = code.rstrip()
            if depth <= 0 and (end.endswith(";") or (
                    end.endswith("}") and is_definition(text))):
                break
        return out

    def add(self, decl, line):
        if self.section is None:
            return
        if self.pending is not None:
            text, cline = self.pending
            self.pending = None
            self.group = Group(text, cline, self.section)
            self.group.lead = self.note
            self.section.items.append(self.group)
        elif self.group is None:
            self.group = Group("", line, self.section)
            self.group.lead = self.note
            self.section.items.append(self.group)
        self.group.decls.append(decl)


def code_part(line, in_comment):
    """The code of a line outside comments, and whether a comment is still
    open at its end."""
    out, i = [], 0
    while i < len(line):
        if in_comment:
            j = line.find("*/", i)
            if j < 0:
                return "".join(out), True
            i, in_comment = j + 2, False
        else:
            j = line.find("/*", i)
            if j < 0:
                out.append(line[i:])
                break
            out.append(line[i:j])
            i, in_comment = j + 2, True
    return "".join(out), in_comment


ROW = re.compile(r'XX\(\s*(\w+)\s*,\s*([^,]+?)\s*,\s*((?:"(?:[^"\\]|\\.)*"\s*)+)\)'
                 r'\s*(?:/\*(.*?)\*/)?')


def parse_define(text, line):
    """A macro, or an X-macro table whose rows are XX(NAME, value,
    "message") with an optional comment each."""
    joined = " ".join(t.rstrip().rstrip("\\") for t in text)
    m = re.match(r"\s*#\s*define\s+(\w+)", joined)
    if not m:
        return None
    name = m.group(1)
    rows = ROW.findall(joined)
    if rows:
        d = Decl("table", name, f"#define {name}(XX) ...", line)
        for r_name, value, msg, note in rows:
            msg = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', msg))
            d.rows.append((r_name, value.strip(), msg, note.strip()))
        return d
    code, note = split_trailing_comment(" ".join(
        t.rstrip().rstrip("\\").strip() for t in text))
    d = Decl("macro", name, " ".join(strip_comments(code).split()), line)
    d.note = note
    return d


def parse_statement(lines, line):
    code, in_comment = [], False
    for raw in lines:
        c, in_comment = code_part(raw, in_comment)
        code.append(c)
    # A trailing comment on the last line notes the whole declaration.
    _, note = split_trailing_comment(lines[-1])
    source = " ".join(" ".join(code).split())
    body = None
    if "{" in source:
        body = lines
    decl = classify(source, line)
    decl.note = note if decl.kind not in ("struct", "enum") else ""
    if body is not None and decl.kind in ("struct", "enum"):
        decl.fields = parse_body(lines, decl.kind)
    return decl


def is_definition(code):
    """A function with its body (`static inline int f(void) { ... }`):
    a parameter list closes before the first brace."""
    head = code.split("{", 1)[0].strip()
    return head.endswith(")") and not re.match(
        r"(typedef|struct|enum|union)\b", head) and "=" not in head


def classify(source, line):
    s = source
    if "{" in s and is_definition(s):
        # An inline function: documented like a declared one, shown
        # without its body.
        head = s.split("{", 1)[0].strip()
        m = re.search(r"(\w+)\s*\(", API_MACRO.sub("", head))
        d = Decl("function", m.group(1), head + ";", line)
        d.api = True
        return d
    if API_MACRO.search(s):
        head = API_MACRO.sub("", s)
        m = re.search(r"(\w+)\s*\(", head)
        if m:
            return Decl("function", m.group(1), s, line)
        return Decl("variable", IDENT.findall(head.rstrip(";"))[-1], s, line)
    if s.startswith("typedef"):
        m = re.match(r"typedef\s+(struct|enum|union)\s+(\w+)?\s*\{", s)
        if m:
            name = re.search(r"\}\s*(\w+)\s*;\s*$", s).group(1)
            kind = "enum" if m.group(1) == "enum" else "struct"
            return Decl(kind, name, s, line)
        m = re.search(r"\(\s*\*\s*(\w+)\s*\)\s*\(", s)
        if m:
            return Decl("fnptr", m.group(1), s, line)
        m = re.match(r"typedef\s+(struct|union|enum)\s+(\w+)\s+(\w+)\s*;$", s)
        if m:
            return Decl("opaque", m.group(3), s, line)
        return Decl("typedef", IDENT.findall(s.rstrip(";"))[-1], s, line)
    m = re.match(r"(struct|enum|union)\s+(\w+)\s*\{", s)
    if m:
        return Decl("enum" if m.group(1) == "enum" else "struct",
                    m.group(1) + " " + m.group(2), s, line)
    idents = IDENT.findall(s.rstrip(";"))
    return Decl("other", idents[-1] if idents else "?", s, line)


def parse_body(lines, kind):
    """Fields of a struct or enum body with their comments."""
    text = "\n".join(lines)
    start, end = text.index("{") + 1, text.rindex("}")
    body = text[start:end].split("\n")
    fields, doc, pending_code, i = [], [], [], 0
    while i < len(body):
        raw = body[i]
        s = raw.strip()
        if not pending_code and s.startswith("/*"):
            j = i
            while "*/" not in body[j]:
                j += 1
            doc.append(comment_text(body[i:j + 1]))
            i = j + 1
            continue
        if not s or s.startswith("#"):
            if not s:
                doc = []
            i += 1
            continue
        pending_code.append(raw)
        code = code_part(" ".join(pending_code), False)[0]
        # A struct field ends at its `;`; an enumerator is one a line.
        if kind == "enum" or (code.rstrip().endswith(";")
                              and depth_change(code) == 0):
            _, note = split_trailing_comment(pending_code[-1])
            src = " ".join(code.split())
            for name, item_src in field_names(src, kind):
                fields.append(Field(name, item_src, "\n\n".join(
                    doc + ([note] if note else []))))
            doc, pending_code = [], []
        i += 1
    return fields


def field_names(src, kind):
    if kind == "enum":
        out = []
        for item in src.rstrip(",").split(","):
            item = item.strip()
            if item and "(" in item:
                out.append((item, item))  # an X-macro expanding to several
            elif item:
                out.append((IDENT.match(item).group(0), item))
        return out
    m = re.search(r"\(\s*\*\s*(\w+)\s*\)\s*\(", src)
    if m:
        return [(m.group(1), src)]
    base = re.sub(r"\[[^\]]*\]|:\s*\d+", "", src.rstrip(";"))
    return [(IDENT.findall(base)[-1], src)]


def parse_header(path, name):
    with open(path, encoding="utf-8") as fp:
        return Parser(fp.read(), path, name).parse()
