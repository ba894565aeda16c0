#!/usr/bin/env python3
"""check_html.py - loads every page of the HTML manual in headless Chromium
and fails on what a reader would trip over.

    check_html.py HTML_DIR [--screenshot FILE] [--chromium PATH]

Serves HTML_DIR from a local HTTP server (127.0.0.1, a free port), then:
  - reads every page's links and ids as written (html.parser): a link to
    a missing file or to an anchor the target does not have fails, as do
    duplicate ids, a resource (style sheet, image, script) from outside
    the manual, and a page no other page links to;
  - opens every page in Chromium (DevTools protocol, cdp.py) and fails on
    console errors and warnings, uncaught exceptions, failed or non-2xx
    requests, requests that leave the local server, images that did not
    render, and a page whose style sheet did not apply; it checks the
    links again as the browser resolved them, anchors included;
  - saves a screenshot of the index (default docs/screenshot-index.png).
Exits 1 with one line per problem, 0 when all is well. Standard library
only; Chromium from Debian (`apt-get install chromium`).
"""
import base64
import html.parser
import http.server
import json
import os
import socketserver
import sys
import threading
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import cdp  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECT = """JSON.stringify({
  ids: Array.from(document.querySelectorAll('[id]'), e => e.id),
  links: Array.from(document.querySelectorAll('a[href]'), a => a.href),
  broken_images: Array.from(document.images)
      .filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src),
  styled: getComputedStyle(document.body).margin === '0px',
  title: document.title
})"""


class Page(html.parser.HTMLParser):
    """Links, resources and ids of one page, as written."""

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.resources = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "a" and "name" in a:
            self.ids.append(a["name"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag in ("img", "script", "iframe") and a.get("src"):
            self.resources.append(a["src"])
        if tag == "link" and a.get("href"):
            self.resources.append(a["href"])


def static_check(root):
    """Problems found by reading the files; returns (problems, pages)."""
    problems, parsed = [], {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".html"):
                rel = os.path.relpath(os.path.join(dirpath, f), root)
                p = Page()
                with open(os.path.join(root, rel), encoding="utf-8") as fp:
                    p.feed(fp.read())
                parsed[rel] = p
    linked = {"index.html"}
    for rel, p in sorted(parsed.items()):
        seen = set()
        for i in p.ids:
            if i in seen:
                problems.append(f"{rel}: duplicate id {i!r}")
            seen.add(i)
        for url in p.resources:
            u = urllib.parse.urlsplit(url)
            if u.scheme in ("http", "https") or url.startswith("//"):
                problems.append(f"{rel}: loads {url} from outside the manual")
            elif u.scheme == "" and not os.path.exists(
                    os.path.join(root, os.path.dirname(rel), u.path)):
                problems.append(f"{rel}: missing resource {url}")
        for url in p.links:
            u = urllib.parse.urlsplit(url)
            if u.scheme or url.startswith("//"):
                continue  # http(s) and mailto links leave the manual
            target = os.path.normpath(os.path.join(os.path.dirname(rel),
                                                   u.path)) if u.path else rel
            linked.add(target)
            if not os.path.exists(os.path.join(root, target)):
                problems.append(f"{rel}: broken link {url}")
            elif u.fragment and target in parsed and \
                    u.fragment not in parsed[target].ids:
                problems.append(f"{rel}: link {url}: {target} has no "
                                f"#{u.fragment}")
    for rel in sorted(set(parsed) - linked):
        problems.append(f"{rel}: no page links to it")
    return problems, sorted(parsed)


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(root):
    handler = lambda *a, **k: Quiet(*a, directory=root, **k)  # noqa: E731
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def browser_check(root, pages, chromium, screenshot):
    problems = []
    server = serve(root)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    seen = {}       # page url -> ids
    links = []      # (page, absolute link)
    try:
        with cdp.Browser(chromium) as b:
            for domain in ("Page", "Runtime", "Log", "Network"):
                b.call(f"{domain}.enable")
            b.call("Emulation.setDeviceMetricsOverride", width=1280,
                   height=900, deviceScaleFactor=1, mobile=False)
            for rel in pages:
                url = base + rel
                b.events.clear()
                b.call("Page.navigate", url=url)
                b.wait_event("Page.loadEventFired")
                info = json.loads(b.call(
                    "Runtime.evaluate", expression=COLLECT,
                    returnByValue=True)["result"]["value"])
                problems += page_problems(rel, b.events, info, base)
                seen[url] = set(info["ids"])
                links += [(rel, link) for link in info["links"]]
                if rel == "index.html" and screenshot:
                    shot = b.call("Page.captureScreenshot", format="png")
                    with open(screenshot, "wb") as fp:
                        fp.write(base64.b64decode(shot["data"]))
    finally:
        server.shutdown()
        server.server_close()
    for rel, link in links:
        u = urllib.parse.urlsplit(link)
        if not link.startswith(base):
            continue
        page = urllib.parse.urlunsplit((u.scheme, u.netloc, u.path, "", ""))
        if page not in seen and page.endswith(".html"):
            problems.append(f"{rel}: link {link} leads to a page the "
                            "browser did not load")
        elif u.fragment and page in seen and u.fragment not in seen[page]:
            problems.append(f"{rel}: link to #{u.fragment}: the browser "
                            f"found no such anchor in {u.path}")
    return problems


def page_problems(rel, events, info, base):
    out = []
    for e in events:
        m, p = e["method"], e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in (
                "error", "warning", "assert"):
            text = " ".join(str(a.get("value", a.get("description", "")))
                            for a in p.get("args", []))
            out.append(f"{rel}: console {p['type']}: {text}")
        elif m == "Runtime.exceptionThrown":
            out.append(f"{rel}: uncaught exception: "
                       f"{p['exceptionDetails'].get('text')}")
        elif m == "Log.entryAdded" and p["entry"]["level"] in ("error",
                                                               "warning"):
            out.append(f"{rel}: browser {p['entry']['level']}: "
                       f"{p['entry']['text']} {p['entry'].get('url', '')}")
        elif m == "Network.requestWillBeSent":
            url = p["request"]["url"]
            if not url.startswith((base, "data:", "about:")):
                out.append(f"{rel}: request leaves the manual: {url}")
        elif m == "Network.responseReceived" and \
                p["response"]["status"] >= 400:
            out.append(f"{rel}: HTTP {p['response']['status']} for "
                       f"{p['response']['url']}")
        elif m == "Network.loadingFailed" and not p.get("canceled"):
            out.append(f"{rel}: request failed: {p.get('errorText')}")
    for src in info["broken_images"]:
        out.append(f"{rel}: image did not render: {src}")
    if not info["styled"]:
        out.append(f"{rel}: the style sheet did not apply")
    if not info["title"]:
        out.append(f"{rel}: no title")
    return out


def main(argv):
    args = argv[1:]
    opts = {"--screenshot": os.path.join(os.path.dirname(HERE),
                                         "screenshot-index.png"),
            "--chromium": os.environ.get("CHROMIUM", "/usr/bin/chromium")}
    for key in list(opts):
        if key in args:
            i = args.index(key)
            opts[key] = args[i + 1]
            del args[i:i + 2]
    if len(args) != 1:
        sys.stderr.write(__doc__)
        return 2
    root = os.path.abspath(args[0])
    if not os.path.exists(os.path.join(root, "index.html")):
        print(f"check_html: no {root}/index.html: run `make docs` first",
              file=sys.stderr)
        return 2
    problems, pages = static_check(root)
    if not os.path.exists(opts["--chromium"]):
        print(f"check_html: no browser at {opts['--chromium']} "
              "(apt-get install chromium)", file=sys.stderr)
        return 2
    problems += browser_check(root, pages, opts["--chromium"],
                              opts["--screenshot"])
    for p in problems:
        print(f"check_html: {p}", file=sys.stderr)
    if problems:
        print(f"check_html: {len(problems)} problem(s) in {len(pages)} "
              "pages", file=sys.stderr)
        return 1
    print(f"check_html: {len(pages)} pages load in Chromium with no broken "
          f"link, anchor, resource or console message; screenshot "
          f"{opts['--screenshot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
