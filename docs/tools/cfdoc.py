#!/usr/bin/env python3
"""cfdoc.py - cfutures' reference documentation, made from the headers.

    cfdoc.py man OUT_DIR     man pages into OUT_DIR/man3 and OUT_DIR/man7
                             (checks first, as `check` does)
    cfdoc.py html OUT_DIR    the HTML manual (docs/html by `make docs`)
    cfdoc.py check [--exported FILE]
                             fails if a public function is not documented:
                             every export-macro declaration in include/*.h
                             must be read, sit under a contract comment and
                             get a man page; with FILE (the library's
                             exported symbols, one a line), each of those
                             must have a page too

Options: --root DIR, the source tree (default: two folders above this
file). Python 3.7 or later, standard library only. docs/README.md
describes the comment conventions the headers follow.
"""
import datetime
import os
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import api as api_mod  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def problems(api, exported=None):
    """What keeps the reference from being complete, as `file:line: why`."""
    out = []
    for h in api.headers:
        rel = os.path.relpath(h.path, api.root)
        parsed = {d.line: d for g in h.groups for d in g.decls if d.api}
        for line, text in h.api_lines:
            if line not in parsed:
                out.append(f"{rel}:{line}: not read as a declaration in a "
                           f"section (is it under a `/* ---- */ /* Title */`"
                           f" banner, one declaration a statement?): {text}")
        for g in h.groups:
            for d in g.functions:
                if not g.doc.strip():
                    out.append(f"{rel}:{d.line}: {d.name} has no contract "
                               "comment: write one on the lines right "
                               "above it, without a blank line between")
    for name in exported or ():
        if name not in api.page_of:
            out.append(f"exported symbol {name} has no man page: declare "
                       "it in include/*.h with CF_API and a comment")
    return out


def source_date(root):
    """The date pages carry: SOURCE_DATE_EPOCH, else the last commit to
    include/, else today."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return datetime.datetime.utcfromtimestamp(int(epoch)).strftime(
            "%Y-%m-%d")
    try:
        out = subprocess.run(
            ["git", "-C", root, "log", "-1", "--format=%cs", "--",
             "include"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return datetime.date.today().isoformat()


def read(root, rel):
    path = os.path.join(root, rel)
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as fp:
        return fp.read()


def main(argv):
    args = argv[1:]
    root = os.path.dirname(os.path.dirname(HERE))
    if "--root" in args:
        i = args.index("--root")
        root = os.path.abspath(args[i + 1])
        del args[i:i + 2]
    exported = None
    if "--exported" in args:
        i = args.index("--exported")
        with open(args[i + 1]) as fp:
            exported = [x.strip() for x in fp if x.strip()]
        del args[i:i + 2]
    if not args or args[0] not in ("man", "html", "check") or \
            (args[0] != "check" and len(args) != 2):
        sys.stderr.write(__doc__)
        return 2
    api = api_mod.Api(root)
    found = problems(api, exported)
    for p in found:
        print(f"cfdoc: {p}", file=sys.stderr)
    if found:
        print(f"cfdoc: {len(found)} problem(s): every public function needs "
              "a contract comment in its header (docs/README.md)",
              file=sys.stderr)
        return 1
    if args[0] == "check":
        n = sum(len(g.functions) for g in api.pages)
        print(f"cfdoc: {n} functions in {len(api.pages)} man pages, "
              "all documented")
        return 0
    out_dir = os.path.abspath(args[1])
    if args[0] == "man":
        import manpages
        pages, links = manpages.write_all(
            api, read(root, "docs/manual/model.md"), out_dir,
            source_date(root))
        print(f"cfdoc: {pages} man pages and {links} links in {out_dir}")
    else:
        import manual
        n = manual.write_all(api, root, out_dir)
        print(f"cfdoc: {n} HTML pages in {out_dir}; open "
              f"{os.path.join(out_dir, 'index.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
