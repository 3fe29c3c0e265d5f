"""bench_smoke_plot: starling-bench's live view (timeline, progress, plots, tool CPU).

Starts a private Prosody (benchlib.py's helpers), then runs
  chat --count 100 --rate 500 --duration 3 --drain 2 --progress --plot P --json J
and checks:
  - exit 0, every message delivered (as smoke_scenarios.py);
  - the JSON "timeline" has one entry per second of the run (+-1: at least
    --duration + --drain - 1 entries, at most the wall-clock seconds the
    process took + 1), numbered 1..n;
  - the per-second counts add up to the totals: delivered and sent to the
    chat report's, logins to the sessions online;
  - tool_cpu reports a CPU percentage;
  - P.dat has one line per entry; P-throughput and P-latency exist as SVG
    (parses as XML with an <svg> root) and PNG (starts with the signature);
  - stderr holds progress lines rewritten with \\r, with every field
    (elapsed, online N/100, logins/s, msgs/s, p99, cpu), ended by a newline.
Also, without Prosody: --plot with no gnuplot on PATH exits 2 with one
line before any run, and login with --no-progress --plot writes no
progress. Stops the Prosody it started (only that process). No timing
assertions.
"""
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (the smoke tests' shared helpers)

COUNT = 100
DURATION_S = 3
DRAIN_S = 2
BENCH_TIMEOUT_S = 60
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROGRESS = re.compile(r"\s*\d+ s  online \d+/%d  logins/s \d+  msgs/s \d+  p99 (-|[0-9.]+ ms)"
                      r"  cpu (-|\d+%%)" % COUNT)


def bench_command(bench, port, scenario, extra):
    return benchlib.bench_command(bench, scenario, port, COUNT, extra=extra)


def check_no_gnuplot(bench, work):
    """--plot without gnuplot on PATH is a usage error before any connection."""
    empty = os.path.join(work, "empty-path")
    os.makedirs(empty, exist_ok=True)
    command = bench_command(bench, 1, "chat", ["--plot", os.path.join(work, "never")])
    result = subprocess.run(command, capture_output=True, text=True, timeout=BENCH_TIMEOUT_S,
                            env={"PATH": empty})
    lines = result.stderr.splitlines()
    if result.returncode != 2 or len(lines) != 1 or "gnuplot" not in lines[0]:
        raise AssertionError(f"--plot without gnuplot: exit {result.returncode}, stderr "
                             f"{result.stderr!r}")


def check_svg(path):
    root = ElementTree.parse(path).getroot()
    if root.tag.rsplit("}", 1)[-1] != "svg":
        raise AssertionError(f"{path}: root element {root.tag}, not svg")


def check_png(path):
    with open(path, "rb") as f:
        if f.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            raise AssertionError(f"{path}: no PNG signature")


def check_plots(prefix, entries):
    with open(prefix + ".dat") as f:
        rows = [line for line in f if line.strip() and not line.startswith("#")]
    if len(rows) != entries:
        raise AssertionError(f"{prefix}.dat: {len(rows)} rows for {entries} timeline entries")
    if not os.path.exists(prefix + ".gp"):
        raise AssertionError(f"{prefix}.gp missing")
    for name in ("throughput", "latency"):
        check_svg(f"{prefix}-{name}.svg")
        check_png(f"{prefix}-{name}.png")


def check_progress(stderr):
    if "\r" not in stderr or not stderr.endswith("\n"):
        raise AssertionError(f"progress: not rewritten with \\r and ended by a newline: "
                             f"{stderr[-300:]!r}")
    lines = [part for part in stderr.replace("\n", "\r").split("\r") if part.strip()]
    progress = [line for line in lines if PROGRESS.fullmatch(line.rstrip())]
    if len(progress) < DURATION_S:
        raise AssertionError(f"progress: {len(progress)} lines with every field in {lines!r}")


def check_timeline(report, wall_s):
    timeline, chat = report["timeline"], report["chat"]
    entries = len(timeline)
    if entries < DURATION_S + DRAIN_S - 1 or entries > wall_s + 1:
        raise AssertionError(f"timeline: {entries} entries for a run of {wall_s:.1f} s")
    if [entry["second"] for entry in timeline] != list(range(1, entries + 1)):
        raise AssertionError(f"timeline: seconds not numbered 1..{entries}")
    for key, total in (("delivered", chat["delivered"]), ("sent", chat["sent"]),
                       ("logins", report["sessions"]["online"])):
        summed = sum(entry[key] for entry in timeline)
        if summed != total:
            raise AssertionError(f"timeline: {key} adds up to {summed}, the total is {total}")
    if not any(entry["latency_ms"]["p99"] is not None for entry in timeline):
        raise AssertionError("timeline: no second with a message latency")
    if report["timeline_latency"] != "message" or report["timeline_truncated"]:
        raise AssertionError(f"timeline: latency {report['timeline_latency']}, truncated "
                             f"{report['timeline_truncated']}")
    if report["tool_cpu"]["percent_of_one_core"] is None:
        raise AssertionError(f"tool_cpu: {report['tool_cpu']}")
    return entries


def check_chat(bench, port, work):
    prefix, json_path = os.path.join(work, "chat"), os.path.join(work, "chat.json")
    command = bench_command(bench, port, "chat",
                            ["--rate", "500", "--duration", str(DURATION_S), "--drain",
                             str(DRAIN_S), "--progress", "--plot", prefix, "--json", json_path])
    started = time.monotonic()
    # Bytes, not text: text mode would turn the progress line's \r into \n.
    result = subprocess.run(command, capture_output=True, timeout=BENCH_TIMEOUT_S)
    wall_s = time.monotonic() - started
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    print(f"$ {' '.join(command)}\n{stdout}{stderr!r}", flush=True)
    report = benchlib.load_report(json_path)
    if report is None:
        raise AssertionError(f"chat: no JSON report (exit {result.returncode})")
    chat = report["chat"]
    if result.returncode != 0 or chat["sent"] == 0 or chat["delivered"] != chat["sent"]:
        raise AssertionError(f"chat: exit {result.returncode}, chat {chat}")
    entries = check_timeline(report, wall_s)
    check_plots(prefix, entries)
    check_progress(stderr)
    if "tool cpu/s" not in stdout:
        raise AssertionError("summary: no tool cpu/s line")


def check_login_quiet(bench, port, work):
    """login with --no-progress: no progress on stderr, plots of logins."""
    prefix = os.path.join(work, "login")
    command = bench_command(bench, port, "login", ["--no-progress", "--plot", prefix])
    result = benchlib.run_printed(command, BENCH_TIMEOUT_S)
    if result.returncode != 0 or "\r" in result.stderr or "logins/s" in result.stderr:
        raise AssertionError(f"login: exit {result.returncode}, stderr {result.stderr!r}")
    check_svg(prefix + "-latency.svg")
    check_png(prefix + "-throughput.png")


def main():
    return benchlib.prosody_main("bench_smoke_plot", COUNT, (
        lambda bench, port, work: check_no_gnuplot(bench, work), check_chat, check_login_quiet),
        needs=(("gnuplot", "gnuplot-nox"),))


if __name__ == "__main__":
    sys.exit(main())
