"""harness.py - runs every benchmark, interleaved, and prints one table.

Usage (bench/run.sh calls it after building):

    python3 bench/harness.py BIN_DIR OUT_DIR

Writes OUT_DIR/table.md (the table it prints), OUT_DIR/results.json (every
run of every case, for charts and later comparisons), OUT_DIR/charts/ (an
SVG per scenario, by charts.py, when matplotlib is there) and raw.log.

Environment:
    BENCH_QUICK=1     smaller sizes and 3 runs: a smoke test
    BENCH_RUNS=N      runs per case (default 5, quick 3)
    BENCH_ONLY=REGEX  only the groups whose title matches (e.g. 'W1|W2')

Design: a case is one command that prints one line
``<scenario> <contender> key=value ...`` (bench/bench.h). Cases that answer
the same question form a group, one row each in the table, and each group
names the cfutures case that the others are compared with. Each run goes
over every group in turn and runs the group's cases in a fresh random order
(seeded by the run number, so reruns repeat it): contenders are interleaved,
and a slow minute on the shared machine hurts all of them alike. The table
gives the median of the runs, their min-max, and peer / cfutures ratios;
every metric is lower-is-better, so a ratio above 1 means cfutures wins.
The targets from the issue are checked at the end (reported, not enforced).
"""
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/
import charts  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
RUNS = int(os.environ.get("BENCH_RUNS", "3" if QUICK else "5"))
ONLY = re.compile(os.environ.get("BENCH_ONLY", ""))
TIMEOUT = 600  # seconds for any one run: a hang fails, it does not block


def size(full, quick):
    return quick if QUICK else full


class Case:
    def __init__(self, label, argv, note=""):
        self.label = label  # the row name
        self.argv = argv    # program name (in BIN_DIR) or "py", then args
        self.note = note
        self.results = []   # dicts of floats, one per successful run
        self.failures = []  # stderr tails


class Group:
    """One question, one block of rows: `metric` is what the ratios use,
    `extra` are further metrics shown by their medians."""

    def __init__(self, title, metric, unit, ref, cases, extra=()):
        self.title, self.metric, self.unit = title, metric, unit
        self.ref, self.cases, self.extra = ref, cases, extra

    def case(self, label):
        return next((c for c in self.cases if c.label == label), None)


def groups():
    n1 = size(1000000, 100000)
    n1_py = size(100000, 20000)  # CPython: ~15 us a task, so fewer
    n1w = 30000                  # W1 warm: 1.7 MB of futures, reused
    rounds_w = size(30, 10)
    n2 = size(100000, 10000)
    n2_py = size(20000, 2000)
    n3s = (100000, 1000000)
    n3_py = 100000               # CPython: 1M would take minutes
    n4s = size((10000, 100000), (2000, 10000))
    n4_lat = size(10000, 1000)
    n4_lat_py = size(2000, 500)
    reps = size(10, 2)
    nmem = size(1000000, 100000)
    out = []

    for w in (1, 2):
        out.append(Group(
            f"W1 throughput, {w} worker{'s' if w > 1 else ''}: N empty "
            "tasks, then wait for all",
            "ns_per_task", "ns/task", "cfutures", [
                Case("cfutures", ["bench_throughput", n1, w]),
                Case("cfutures, result of each", ["bench_throughput", n1, w,
                                                  0, 1, "each"],
                     "cf_future_result on each future in submit order, "
                     "and its release, instead of one cf_wait"),
                Case("simple C pool", ["peer_simple_c", "w1", n1, w]),
                Case("libuv", ["peer_uv", "w1", n1, w],
                     "uv_queue_work, no futures; its requests' memory "
                     "touched before the clock"),
                Case("GLib", ["peer_glib", "w1", n1, w],
                     "GThreadPool, no futures"),
                Case("oneTBB", ["peer_tbb", "w1", n1, w],
                     "task_group, no futures; submitter helps in wait()"),
                Case("OpenMP", ["peer_omp", "w1", n1, w],
                     "tasks, no futures; past 64 queued tasks a thread, "
                     "libgomp runs new ones inline on the creator"),
                Case("CPython threads", ["py", "w1", n1_py, w],
                     f"ThreadPoolExecutor, N={n1_py}"),
            ], extra=("tasks_per_s", "sys_ns_per_task")))

    # The same, on a pool that has already run work: W1's timed section
    # in rounds in one process (bench_w1_clock), few enough tasks a round
    # that their memory is reused, so the hand-off is what is measured,
    # not the fresh memory a first burst of a million tasks faults in.
    for w in (1, 2):
        out.append(Group(
            f"W1 warm, {w} worker{'s' if w > 1 else ''}: {n1w} empty tasks "
            f"a round, then wait for all; median of {rounds_w} rounds of "
            "one pool",
            "ns_per_task", "ns/task", "cfutures", [
                Case("cfutures", ["bench_throughput", n1w, w, 0, rounds_w]),
                Case("cfutures, result of each",
                     ["bench_throughput", n1w, w, 0, rounds_w, "each"],
                     "cf_future_result on each future in submit order, "
                     "and its release, instead of one cf_wait"),
                Case("simple C pool",
                     ["peer_simple_c", "w1", n1w, w, rounds_w]),
                Case("libuv", ["peer_uv", "w1", n1w, w, rounds_w],
                     "uv_queue_work, no futures"),
                Case("GLib", ["peer_glib", "w1", n1w, w, rounds_w],
                     "GThreadPool, no futures"),
                Case("oneTBB", ["peer_tbb", "w1", n1w, w, rounds_w],
                     "task_group, no futures; submitter helps in wait()"),
                Case("OpenMP", ["peer_omp", "w1", n1w, w, rounds_w],
                     "tasks, no futures; past 64 queued tasks a thread, "
                     "libgomp runs new ones inline on the creator"),
            ], extra=("tasks_per_s", "sys_ns_per_task")))

    out.append(Group(
        "W2 latency: submit one empty task, wait for its result (1 worker)",
        "mean_us", "us/round trip", "cfutures", [
            Case("cfutures", ["bench_latency", n2]),
            Case("simple C pool", ["peer_simple_c", "w2", n2]),
            Case("libuv", ["peer_uv", "w2", n2]),
            Case("GLib", ["peer_glib", "w2", n2]),
            Case("oneTBB", ["peer_tbb", "w2", n2],
                 "run+wait: the waiter runs the task itself"),
            Case("OpenMP", ["peer_omp", "w2", n2],
                 "task+taskwait: often run by the waiter itself"),
            Case("CPython threads", ["py", "w2", n2_py],
                 f"ThreadPoolExecutor, N={n2_py}"),
            Case("bare condvar hand-off", ["peer_handoff", "cond", n2],
                 "two threads, mutex+cond ping-pong"),
            Case("bare futex wake", ["peer_handoff", "futex", n2],
                 "two threads, futex ping-pong"),
            Case("bare spin hand-off", ["peer_handoff", "spin", n2],
                 "two threads spinning, never sleeping"),
        ], extra=("p50_us", "p99_us")))

    for n in n3s:
        for mode in ("as_completed", "wait"):
            for state in ("live", "done"):
                cases = [Case("cfutures",
                              ["bench_many_futures", n, mode, state])]
                if n <= n3_py:
                    cases.append(Case("CPython", ["py", "w3", n, mode, state]))
                what = ("completing meanwhile" if state == "live"
                        else "all done already")
                call = ("as_completed" if mode == "as_completed"
                        else "wait(ALL_COMPLETED)")
                out.append(Group(
                    f"W3 {call} over {n} futures, {what}",
                    "seconds", "s", "cfutures", cases,
                    extra=("ns_per_future",)))

    for n in n4s:
        for method, what in (("submit", "submit/result"),
                             ("map1", "map, chunksize 1"),
                             ("map100", "map, chunksize 100")):
            out.append(Group(
                f"W4 process pool (2 workers), {n} tasks x+1, by {what}",
                "ns_per_task", "ns/task", "cfutures", [
                    Case("cfutures", ["bench_process_pool", n, method]),
                    Case("CPython processes", ["py", "w4", n, method],
                         "ProcessPoolExecutor"),
                ], extra=("tasks_per_s",)))
    out.append(Group(
        "W4 process pool round trip: submit x+1, wait for it",
        "mean_us", "us/round trip", "cfutures", [
            Case("cfutures", ["bench_process_latency", n4_lat]),
            Case("CPython processes", ["py", "w4lat", n4_lat_py],
                 f"ProcessPoolExecutor, N={n4_lat_py}"),
        ], extra=("p50_us", "p99_us")))

    out.append(Group(
        f"W5 CPU-bound: the spec's primes map, list x{reps}, 2 workers",
        "seconds", "s", "cfutures process pool", [
            Case("cfutures process pool", ["bench_primes", "process", 2, reps]),
            Case("cfutures thread pool", ["bench_primes", "thread", 2, reps]),
            Case("simple C pool", ["peer_simple_c", "w5", 2, reps]),
            Case("serial C loop", ["bench_primes", "serial", 1, reps]),
            Case("CPython processes", ["py", "w5", 2, reps],
                 "ProcessPoolExecutor, the spec's code"),
        ]))

    nthen = size(1000000, 100000)
    out.append(Group(
        "Then: a continuation hop vs a submit, 1 worker, N hops then wait "
        "for all",
        "ns_per_hop", "ns/hop", "cf_executor_submit", [
            Case("cf_executor_submit", ["bench_then", "submit", nthen]),
            Case("then, input pending", ["bench_then", "then_pending", nthen],
                 "N continuations on one bare future, then completed"),
            Case("then, input done", ["bench_then", "then_done", nthen]),
            Case("done-callback that submits",
                 ["bench_then", "callback", nthen],
                 "then by hand: N callbacks on one bare future"),
            Case("submit, 1k at a time", ["bench_then", "submit", 1000,
                                          nthen // 1000]),
            Case("then pending, 1k at a time",
                 ["bench_then", "then_pending", 1000, nthen // 1000]),
            Case("callback, 1k at a time",
                 ["bench_then", "callback", 1000, nthen // 1000]),
        ], extra=("sys_ns_per_hop",)))
    out.append(Group(
        "Then chains: N dependent hops, 1 worker",
        "ns_per_hop", "ns/hop", "submit, wait, submit", [
            Case("submit, wait, submit", ["bench_then", "chain_submit", n2]),
            Case("done-callback chain by hand",
                 ["bench_then", "chain_callback", n2],
                 "each step's callback submits the next"),
            Case("then chain on the pool", ["bench_then", "chain_then", n2]),
            Case("inline then chain", ["bench_then", "chain_inline", n2]),
        ], extra=("run_ns_per_hop", "sys_ns_per_hop")))

    out.append(Group(
        f"Memory: RSS per pending task, {nmem} tasks queued behind a busy "
        "worker",
        "bytes_per_task", "bytes/task", "cfutures", [
            Case("cfutures", ["bench_memory", nmem]),
            Case("simple C pool", ["peer_simple_c", "mem", nmem]),
            Case("libuv", ["peer_uv", "mem", nmem],
                 "the caller's uv_work_t counted"),
            Case("GLib", ["peer_glib", "mem", nmem], "no future: item only"),
            Case("oneTBB", ["peer_tbb", "mem", nmem]),
            Case("CPython threads", ["py", "mem", nmem]),
        ], extra=("peak_rss_mb",)))
    return [g for g in out if ONLY.search(g.title)]


def command(case, bin_dir):
    prog, args = case.argv[0], [str(a) for a in case.argv[1:]]
    if prog == "py":
        here = os.path.dirname(os.path.abspath(__file__))
        return [sys.executable, os.path.join(here, "peers",
                                             "cpython_futures.py")] + args
    path = os.path.join(bin_dir, prog)
    return [path] + args if os.path.exists(path) else None


def parse(line):
    values = {}
    for token in line.split()[2:]:
        key, sep, value = token.partition("=")
        if sep:
            try:
                values[key] = float(value)
            except ValueError:
                pass
    return values


def run_case(case, bin_dir, log):
    argv = command(case, bin_dir)
    if argv is None:
        case.failures.append("not built (peer library missing?)")
        return
    try:
        proc = subprocess.run(argv, capture_output=True, text=True,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        case.failures.append(f"timed out after {TIMEOUT} s")
        log.write(f"TIMEOUT {' '.join(argv)}\n")
        return
    lines = proc.stdout.strip().splitlines()
    log.write(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
    log.flush()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        case.failures.append(f"exit {proc.returncode}: {tail}")
        return
    case.results.append(parse(lines[-1]))


def fmt(x):
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def median(case, metric):
    xs = [r[metric] for r in case.results if metric in r]
    return statistics.median(xs) if xs else None


def spread(case, metric):
    xs = [r[metric] for r in case.results if metric in r]
    return f"{fmt(min(xs))}-{fmt(max(xs))}" if xs else "-"


def table(gs, charts_dir=None):
    rows = []
    for g in gs:
        ref = g.case(g.ref)
        ref_med = median(ref, g.metric) if ref else None
        extra = ", ".join(g.extra)
        rows.append(f"\n### {g.title}\n")
        rows.append(f"| contender | median {g.unit} | min-max | "
                    f"{extra or 'other'} (medians) | ratio vs "
                    f"{g.ref} | note |")
        rows.append("|---|---:|---:|---:|---:|---|")
        for c in g.cases:
            med = median(c, g.metric)
            if med is None:
                why = c.failures[-1] if c.failures else "no result"
                rows.append(f"| {c.label} | failed | | | | {why} |")
                continue
            others = " / ".join(fmt(median(c, k)) for k in g.extra)
            if c is ref:
                ratio = "1"
            elif ref_med:
                ratio = f"{med / ref_med:.2f}x"
            else:
                ratio = "-"
            runs = len(c.results)
            note = c.note + (f" ({runs} of {runs + len(c.failures)} runs "
                             "ok)" if c.failures else "")
            rows.append(f"| {c.label} | {fmt(med)} | {spread(c, g.metric)} |"
                        f" {others} | {ratio} | {note} |")
        chart = f"{charts.slug(g.title)}.svg"
        if charts_dir and os.path.exists(os.path.join(charts_dir, chart)):
            rows.append(f"\n![{g.title}](charts/{chart})")
    return "\n".join(rows)


def save_results(gs, path, mode):
    """Every run of every case, so charts (and later comparisons) work
    from the runs themselves rather than from the table."""
    data = {"mode": mode, "runs": RUNS,
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "groups": [{"title": g.title, "metric": g.metric,
                        "unit": g.unit, "ref": g.ref,
                        "cases": [{"label": c.label, "note": c.note,
                                   "results": c.results,
                                   "failures": c.failures}
                                  for c in g.cases]} for g in gs]}
    with open(path, "w") as fp:
        json.dump(data, fp, indent=1)


def draw_charts(results, charts_dir):
    """charts.py over the results; a missing matplotlib costs the charts,
    not the run."""
    try:
        charts.render(results, charts_dir)
    except ImportError:
        print(f"harness: no charts: {sys.executable} has no matplotlib "
              "(apt-get install python3-matplotlib); the table is complete",
              file=sys.stderr)
        return None
    return charts_dir


def find(gs, prefix):
    return [g for g in gs if g.title.startswith(prefix)]


def targets(gs):
    """The issue's targets: (what, measured, verdict) for each."""
    out = []

    def check(what, value, ok, shown):
        verdict = "n/a" if value is None else ("MET" if ok(value) else "MISSED")
        out.append(f"| {what} | {shown(value) if value is not None else '-'}"
                   f" | {verdict} |")

    def med(g, label, metric=None):
        c = g.case(label) if g else None
        return median(c, metric or g.metric) if c else None

    def ratio(g, peer, metric=None):
        a, b = med(g, peer, metric), med(g, g.ref, metric) if g else None
        return a / b if a and b else None

    for g in find(gs, "W1"):
        check(f"{g.title.split(':')[0]}: <= 100 ns/task",
              med(g, "cfutures"), lambda v: v <= 100, lambda v: f"{v:.1f} ns")
    for g in find(gs, "W2"):
        check("W2: mean round trip <= 1 us", med(g, "cfutures"),
              lambda v: v <= 1, lambda v: f"{v:.2f} us")
        for peer in ("CPython threads", "libuv"):
            check(f"W2: >= 40x better than {peer}", ratio(g, peer),
                  lambda v: v >= 40, lambda v: f"{v:.0f}x")
    for g in gs:
        t = g.title
        if t.startswith("W3 as_completed over 100000 futures"):
            check(f"{t}: >= 50x faster than CPython",
                  ratio(g, "CPython"), lambda v: v >= 50,
                  lambda v: f"{v:.0f}x")
        if t.startswith("W3") and "1000000" in t:
            check(f"{t}: well under 1 s", med(g, "cfutures"),
                  lambda v: v < 0.5, lambda v: f"{v:.3f} s")
        if t.startswith("W4") and "submit/result" in t:
            check(f"{t}: >= 50x CPython", ratio(g, "CPython processes"),
                  lambda v: v >= 50, lambda v: f"{v:.0f}x")
        if t.startswith("W4") and "chunksize 100" in t:
            check(f"{t}: >= 20x CPython", ratio(g, "CPython processes"),
                  lambda v: v >= 20, lambda v: f"{v:.0f}x")
        if t.startswith("W4 process pool round trip"):
            check("W4 round trip: p50 < 10 us", med(g, "cfutures", "p50_us"),
                  lambda v: v < 10, lambda v: f"{v:.1f} us")
        if t.startswith("W5"):
            simple = med(g, "simple C pool")
            for label in ("cfutures process pool", "cfutures thread pool"):
                v = med(g, label)
                check(f"W5: {label} within 10% of the simple C pool",
                      v / simple if v and simple else None,
                      lambda r: r <= 1.10, lambda r: f"{r:.2f}x its time")
        if t.startswith("Memory"):
            check("Memory: <= 128 bytes per pending task",
                  med(g, "cfutures"), lambda v: v <= 128,
                  lambda v: f"{v:.0f} B")
    return ("| target (reported, not enforced) | measured | verdict |\n"
            "|---|---:|---|\n" + "\n".join(out))


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True,
                              text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine():
    lscpu = sh("lscpu | grep -E '^(Model name|CPU\\(s\\)|Thread|Core|"
               "Socket|L[123]|Hypervisor)'")
    versions = sh("dpkg-query -W -f='${Package} ${Version}\\n' libuv1-dev "
                  "libglib2.0-dev libtbb-dev libgomp1 python3 2>/dev/null")
    here = os.path.dirname(os.path.abspath(__file__))
    commit = sh(f"git -C '{here}' rev-parse --short HEAD")
    dirty = sh(f"git -C '{here}/..' status --porcelain -- src include")
    return "\n".join([
        f"cfutures: commit {commit or '?'}"
        f"{' + uncommitted changes in src/ or include/' if dirty else ''}",
        lscpu,
        f"Kernel: {platform.release()}",
        f"Compiler: {sh('cc --version | head -1')}",
        f"Python: {sys.version.split()[0]} ({sys.executable})",
        f"Memory: {sh('free -h | grep Mem')}",
        "Peers:", versions,
    ])


def main(argv):
    if len(argv) != 3:
        raise SystemExit(__doc__)
    bin_dir, out_dir = argv[1], argv[2]
    os.makedirs(out_dir, exist_ok=True)
    gs = groups()
    total = RUNS * sum(len(g.cases) for g in gs)
    done = 0
    start = time.time()
    tty = sys.stderr.isatty()
    with open(os.path.join(out_dir, "raw.log"), "w") as log:
        for run in range(RUNS):
            rng = random.Random(run)
            for g in gs:
                order = list(g.cases)
                rng.shuffle(order)
                for c in order:
                    run_case(c, bin_dir, log)
                    done += 1
                    if tty:
                        print(f"\r[{done}/{total}] run {run + 1}/{RUNS}: "
                              f"{g.title[:40]:40} {c.label[:24]:24}",
                              end="", file=sys.stderr, flush=True)
                if not tty:
                    print(f"[{done}/{total}] run {run + 1}/{RUNS}: "
                          f"{g.title}", file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)
    mode = "quick" if QUICK else "full"
    results = os.path.join(out_dir, "results.json")
    save_results(gs, results, mode)
    charts_dir = draw_charts(results, os.path.join(out_dir, "charts"))
    report = "\n".join([
        f"## cfutures benchmarks ({mode} mode, {RUNS} runs per case, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, {time.time() - start:.0f} s)",
        "",
        "Medians of the runs; ratio = contender / the group's reference "
        "(lower is better everywhere, so a ratio above 1 means cfutures "
        "wins).",
        table(gs, charts_dir),
        "",
        "### Targets",
        "",
        targets(gs),
        "",
        "### Machine",
        "",
        "```",
        machine(),
        "```",
    ])
    with open(os.path.join(out_dir, "table.md"), "w") as fp:
        fp.write(report + "\n")
    print(report)
    failed = [c.label for g in gs for c in g.cases if not c.results]
    if failed:
        print(f"\n{len(failed)} case(s) produced no result; see "
              f"{os.path.join(out_dir, 'raw.log')}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)
