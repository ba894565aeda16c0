#!/usr/bin/python3
"""charts.py - an SVG chart per benchmark scenario: each contender's median
as a bar, its min-max range as a whisker, cfutures in its own colour.

    charts.py RESULTS OUT_DIR

RESULTS is either the harness's bench/out/results.json (every run of every
case: bench/run.sh writes it and calls this) or a Markdown file with the
harness's tables (bench/out/table.md, bench/RESULTS.md): a `### title` or
`#### title` line, then a table whose columns are contender, median, min-max.
A title that repeats keeps its first table. One chart per scenario with at
least two contenders, named after the title up to its colon
(w1-throughput-1-worker.svg); prints a Markdown line per chart.

Needs matplotlib: Debian's python3-matplotlib, for Debian's /usr/bin/python3
(bench/run.sh installs it). Lower is better on every chart; the axis is
logarithmic when the values span more than 20x.
"""
import json
import os
import re
import statistics
import sys

LABEL_WIDTH = 24


def slug(title):
    s = title.split(":")[0].lower()
    return re.sub(r"[^a-z0-9_]+", "-", s).strip("-")


def number(text):
    """"11.49M", "19,396", "0.0032" -> float; None when not a number."""
    text = text.strip().replace(",", "")
    m = re.fullmatch(r"([0-9.]+(?:e-?\d+)?)([kM]?)", text)
    if not m:
        return None
    return float(m.group(1)) * {"": 1, "k": 1e3, "M": 1e6}[m.group(2)]


def from_json(path):
    with open(path, encoding="utf-8") as fp:
        data = json.load(fp)
    out = []
    for g in data["groups"]:
        rows = []
        for c in g["cases"]:
            xs = [r[g["metric"]] for r in c["results"] if g["metric"] in r]
            if xs:
                rows.append((c["label"], statistics.median(xs), min(xs),
                             max(xs)))
        out.append({"title": g["title"], "unit": g["unit"], "ref": g["ref"],
                    "rows": rows})
    return out


def from_markdown(path):
    with open(path, encoding="utf-8") as fp:
        lines = fp.read().split("\n")
    out, seen, title = [], set(), None
    i = 0
    while i < len(lines):
        m = re.match(r"#{3,4} (.+)", lines[i])
        if m:
            title = m.group(1).strip()
        elif title and lines[i].startswith("| contender | median "):
            unit = lines[i].split("|")[2].strip()[len("median "):]
            ref = re.search(r"ratio vs ([^|]+?) \|", lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip("|").split("|")]
                med = number(cells[1])
                rng = re.fullmatch(r"([0-9.,]+[kM]?)-([0-9.,]+[kM]?)",
                                   cells[2])
                if med is not None and rng:
                    rows.append((cells[0], med, number(rng.group(1)),
                                 number(rng.group(2))))
                i += 1
            if title not in seen:
                seen.add(title)
                out.append({"title": title, "unit": unit,
                            "ref": ref.group(1) if ref else "cfutures",
                            "rows": rows})
            title = None
            continue
        i += 1
    return out


def short(label):
    return label if len(label) <= LABEL_WIDTH else label[:LABEL_WIDTH - 1] + "."


def draw(group, path, plt):
    rows = group["rows"]
    labels = [short(r[0]) for r in rows]
    med = [r[1] for r in rows]
    lo = [r[1] - r[2] for r in rows]
    hi = [r[3] - r[1] for r in rows]
    colours = ["#0b5cad" if r[0].startswith("cfutures") else "#9aa5b1"
               for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    y = list(range(len(rows)))[::-1]
    ax.barh(y, med, color=colours, height=0.6)
    ax.errorbar(med, y, xerr=[lo, hi], fmt="none", ecolor="#1f2328",
                elinewidth=1, capsize=3)
    ax.set_yticks(y)
    ax.set_yticklabels(labels)
    span = max(r[3] for r in rows) / max(min(r[2] for r in rows), 1e-12)
    log = span > 20
    if log:
        ax.set_xscale("log")
    ref = next((r[1] for r in rows if r[0] == group["ref"]), None)
    for yi, r in zip(y, rows):
        note = f"{fmt(r[1])}"
        if ref and r[0] != group["ref"]:
            note += f"  ({r[1] / ref:.2f}x)"
        ax.annotate(note, (r[3], yi), xytext=(6, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.set_xlabel(f"median {group['unit']}"
                  f"{' (log scale)' if log else ''}, lower is better; "
                  f"whisker: min-max of the runs; (ratio to {group['ref']})")
    ax.set_title(wrap(group["title"], 70), fontsize=10, loc="left")
    ax.margins(x=0.25 if not log else 0.05)
    if log:
        left, right = ax.get_xlim()
        ax.set_xlim(left, right * 4)  # room for the labels
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def fmt(x):
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def wrap(text, width):
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + len(w) + 1 > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    return "\n".join(lines + [cur])


def render(src, out_dir):
    """Draws the charts; returns [(title, file name)]. Raises ImportError
    without matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    # Text stays text (small files, the reader's fonts); fixed ids, no
    # date: the same figures give the same file.
    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "cfutures",
                         "font.size": 9})
    groups = from_json(src) if src.endswith(".json") else from_markdown(src)
    os.makedirs(out_dir, exist_ok=True)
    out = []
    for g in groups:
        if len(g["rows"]) < 2:
            continue  # nothing to compare with
        name = slug(g["title"]) + ".svg"
        draw(g, os.path.join(out_dir, name), plt)
        out.append((g["title"], name))
    return out


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    try:
        drawn = render(argv[1], argv[2])
    except ImportError:
        print("charts.py: no matplotlib for this python "
              f"({sys.executable}); apt-get install python3-matplotlib "
              "and run it with /usr/bin/python3", file=sys.stderr)
        return 3
    for title, name in drawn:
        print(f"![{title}]({os.path.basename(argv[2])}/{name})")
    print(f"charts.py: {len(drawn)} charts in {argv[2]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
