"""api.py - every public header's model, and where each name is documented.

The headers are include/*.h, cfutures.h first. The opening comment of
cfutures.h is the model's conventions (model.html, cfutures(7)); that of
another header (cfutures_mpi.h) describes its library, so it introduces
the header's first section when that has none of its own: it then leads
that part of the manual and the NOTES of its man pages.

A group that declares a function is a man page, named for its first
function; its other names become pages that point to it (`.so`). A type
that no page declares is shown on the pages whose declarations use it
(cf_thread_pool_options on cf_thread_pool_new(3)), and its name points
to the first of them.
"""
import glob
import os
import re

import headerdoc

SHOWN_KINDS = ("struct", "enum", "fnptr", "typedef")


class Api:
    def __init__(self, root):
        self.root = root
        paths = sorted(glob.glob(os.path.join(root, "include", "*.h")),
                       key=lambda p: (os.path.basename(p) != "cfutures.h", p))
        self.headers = [headerdoc.parse_header(p, os.path.basename(p))
                        for p in paths]
        for h in self.headers[1:]:
            first = h.sections[0] if h.sections else None
            if first is not None and not first.intro and h.intro:
                first.intro = library_intro(h)
        self.decls = {}      # name -> Decl
        self.group_of = {}   # name -> Group
        for h in self.headers:
            for g in h.groups:
                for d in g.decls:
                    self.decls.setdefault(d.name, d)
                    self.group_of.setdefault(d.name, g)
        self.pages = [g for h in self.headers for g in h.groups
                      if g.functions]
        self.page_of = {}    # name -> the Group whose page documents it
        for g in self.pages:
            for d in g.decls:
                self.page_of.setdefault(d.name, g)
        for g in self.pages:
            for t in self.types_used(g):
                self.page_of.setdefault(t.name, g)
        self.codes = {}      # CF_EINVAL -> (value, message, note)
        for h in self.headers:
            for g in h.groups:
                for d in g.decls:
                    for name, value, msg, note in d.rows:
                        self.codes["CF_" + name] = (value, msg, note)

    def page_name(self, g):
        return g.functions[0].name

    def types_used(self, g):
        """Documented types a page's declarations mention, and the types
        those mention, in order of first mention, not the group's own."""
        own = set(g.names)
        seen, order = set(), []
        todo = [d.source for d in g.decls]
        while todo:
            src = todo.pop(0)
            for word in re.findall(r"\b\w+\b", src):
                d = self.decls.get(word)
                if (d is None or word in own or word in seen
                        or d.kind not in SHOWN_KINDS):
                    continue
                seen.add(word)
                order.append(d)
                todo.append(d.source)
        return order

    def summary(self, g):
        """The comment's first sentence, for NAME lines: past 64
        characters cut before its first colon, semicolon or parenthesis;
        lower case first, no final period."""
        text = " ".join(g.doc.split("\n\n")[0].split())
        m = re.match(r"(.+?[.!?])(?=\s+[A-Z(`\"]|$)", text)
        first = re.sub(r"`([^`]*)`", r"\1", m.group(1) if m else text)
        first = first.rstrip(".")
        cut = [i for i in (first.find(": "), first.find("; "),
                           first.find(" (")) if i > 15]
        if cut and len(first) > 64:
            first = first[:min(cut)]
        word = first.split(" ")[0]
        if word[:1].isupper() and word[1:] == word[1:].lower() and \
                not word.startswith("Python"):
            first = first[0].lower() + first[1:]
        return first

    def sections(self):
        return [s for h in self.headers for s in h.sections]


def library_intro(h):
    """A header's opening comment without its `name.h - ` prefix."""
    text = h.intro
    m = re.match(r"\S+\.h\s+-\s+(.)", text)
    if m:
        text = m.group(1).upper() + text[m.end():]
    return text


def wrap_signature(sig, width=72):
    """A long prototype broken after commas, continued under its `(`."""
    if len(sig) <= width or "(" not in sig:
        return [sig]
    head, rest = sig.split("(", 1)
    pad = " " * (len(head) + 1)
    lines, cur = [], head + "("
    for i, part in enumerate(rest.split(", ")):
        piece = part + ("" if i == len(rest.split(", ")) - 1 else ",")
        if len(cur) + len(piece) + 1 > width and cur.strip() != head + "(":
            lines.append(cur.rstrip())
            cur = pad + piece + " "
        else:
            cur += piece + " "
    lines.append(cur.rstrip())
    return lines


def type_source(decl):
    """A struct or enum as a user reads it: the fields, no comments."""
    if decl.kind not in ("struct", "enum") or not decl.fields:
        return wrap_signature(decl.signature)
    head = re.match(r"(.*?\{)", decl.signature).group(1)
    tail = decl.signature[decl.signature.rindex("}"):]
    body = []
    for f in decl.fields:
        src = f.source
        if decl.kind == "enum" and not src.endswith(","):
            src += ","
        body += ["    " + x for x in wrap_signature(src, 68)]
    return [head] + body + [tail]
