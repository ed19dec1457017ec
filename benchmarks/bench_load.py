"""Many sessions at once: the running app driven by 1, 4 and 8 headless-Chromium sessions.

Starts ``streamlit run app.py`` on a free loopback port with the shipped weights and a small demo
library (built first with ``library build-demo`` into a temporary folder, timed apart and left
out), and two X-ray phantoms written as PNG files. Every session, in its own browser context,
runs the same script, once per round (each round a new page, so a new Streamlit session that
computes everything again):

1. open X-ray triage and add the demo model cxr-resnet18 to the models for uploads (uploads
   otherwise go to the real-data model, which refuses a phantom: no label to compare);
2. ``upload``: both X-rays through the file chooser, until both results are drawn;
3. ``target``: the Grad-CAM target class set to Normal, until both maps are drawn again;
4. ``similar``: open Similar cases (the uploads are the query), until the results and the
   compare view are drawn;
5. ``ct``: open CT volume and load the COVID-19 demo CT, until its scores and maps are drawn.

A step is timed from the action (upload, click) to a finished page: Streamlit's run over (the
app's ``data-test-script-state`` is ``notRunning``), no stale element left, and the step's
expected elements present. The page's text of each step (labels, probabilities, the OOD
checks, the result pseudonyms, the CT scores) is compared with the 1-session run: a difference
is an error, as is an exception or error box on the page, "Something went wrong", a timeout, or
a traceback in the server's log.

Prints per number of sessions N: errors, p50/p95 of the step times, analyses per minute
(sessions x rounds x 4 steps / wall time) and their ratio to one session doing the same work
back to back (the N = 1 run), the server's peak RSS (VmRSS of its process tree, polled every
0.2 s) and its growth over N = 1, and where the CPU time went: the server, the browser, and the
Playwright driver (from /proc/<pid>/stat). A warm-up session runs first (models loaded, the
library's search index built), timed apart.

Targets on this 2-core machine: 8 sessions, 0 errors, results identical to the 1-session run,
analyses per minute >= 0.8 x one session's, memory that does not grow with N beyond the
sessions' own images.

    python benchmarks/bench_load.py [--sessions 1,4,8] [--rounds 2] [--patients 8] [--port 0]
        [--browser-mode contexts|browsers] [--server-env NAME=VALUE ...] [--keep-log] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from google.protobuf.message import DecodeError  # noqa: E402
from playwright.async_api import Page, async_playwright  # noqa: E402
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402

from core.demo.xray_phantom import generate_xray  # noqa: E402
from tests.browser import CHROMIUM, CHROMIUM_FLAGS, streamlit_server  # noqa: E402

#: The timed steps of a session's script: each is one analysis.
STEPS = ("upload", "target", "similar", "ct")
UPLOAD_MODEL = "cxr-resnet18"
TARGET = "Normal"
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOG_PROBLEM = re.compile(r"Traceback|Unexpected |Error|Exception|missing ScriptRunContext|WARNING|Warning")


# -- processes ------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, str, float] | None:
    """(parent pid, command name, CPU seconds) of a live process, from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), name, (int(fields[11]) + int(fields[12])) / CLK_TCK


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def vm_hwm_mb(pid: int) -> float:
    """The process's own peak resident memory (VmHWM) in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Sampler(threading.Thread):
    """Polls the process trees of the server and of this script: the server's resident memory,
    and every process's CPU seconds (the last value seen is kept for a process that ended, so
    the browser's closed renderers still count, to within one poll)."""

    def __init__(self, server_pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True, name="sampler")
        self.server_pid = server_pid
        self.interval = interval
        self.cpu: dict[int, tuple[str, float]] = {}  # pid -> (group, CPU s)
        self.peak_rss_kb = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def _group(self, pid: int, name: str, roots: dict[int, str], parents: dict[int, int]) -> str | None:
        p, hops = pid, 0
        while p > 1 and hops < 64:
            if p in roots:
                root = roots[p]
                if root == "server":
                    return "server"
                if p == pid:
                    return None  # this script itself: counted with getrusage
                return "browser" if "chrom" in name.lower() else "driver"
            p, hops = parents.get(p, 0), hops + 1
        return None

    def poll(self) -> None:
        parents: dict[int, int] = {}
        stats: dict[int, tuple[str, float]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                s = _stat(int(entry))
                if s is not None:
                    parents[int(entry)] = s[0]
                    stats[int(entry)] = (s[1], s[2])
        roots = {self.server_pid: "server", os.getpid(): "self"}
        rss = 0
        with self._lock:
            for pid, (name, cpu) in stats.items():
                group = self._group(pid, name, roots, parents)
                if group is None:
                    continue
                self.cpu[pid] = (group, cpu)
                if group == "server":
                    rss += _rss_kb(pid)
            self.peak_rss_kb = max(self.peak_rss_kb, rss)

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> dict[str, float]:
        """CPU seconds so far per group (server, browser, driver, bench), and the peak RSS since
        the last snapshot (MB); the peak starts again."""
        self.poll()
        with self._lock:
            out = {g: 0.0 for g in ("server", "browser", "driver")}
            for group, cpu in self.cpu.values():
                out[group] += cpu
            out["peak_rss_mb"] = self.peak_rss_kb / 1024
            self.peak_rss_kb = 0
        t = os.times()
        out["bench"] = t.user + t.system
        return out


# -- the server -----------------------------------------------------------------------------


def build_library(folder: Path, patients: int) -> float:
    """The demo library the app would build on its first launch; returns seconds."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "core", "library", "build-demo", "--patients", str(patients), "--library", str(folder)],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


# -- one session ----------------------------------------------------------------------------

#: True when Streamlit's run is over, no element is stale and every expected element is there.
#: ``want``: [css selector, text regex or "", minimum count].
FINISHED_JS = """
(want) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-stale="true"]')) return false;
  if (document.querySelector('[data-testid="stSpinner"]')) return false;
  for (const [css, pattern, n] of want) {
    const re = pattern ? new RegExp(pattern) : null;
    let count = 0;
    for (const el of document.querySelectorAll(css)) {
      if (!re || re.test(el.innerText)) count++;
    }
    if (count < n) return false;
  }
  return true;
}
"""

#: What counts as an error shown on the page.
PAGE_ERRORS_JS = """
() => {
  const out = [];
  for (const el of document.querySelectorAll(
      '[data-testid="stException"], [data-testid="stAlertContentError"]')) out.push(el.innerText.slice(0, 300));
  if (document.body.innerText.includes('Something went wrong')) out.push('Something went wrong');
  return out;
}
"""


@dataclass
class SessionRun:
    """What one session saw: step times (s) per round, the page texts read, and errors."""

    times: list[dict[str, float]] = field(default_factory=list)
    results: list[dict[str, list[str]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Runs:
    """Counts the runs of a page's script that finished, from the server's messages on the
    page's websocket. (The page's own "running" state cannot tell: a short run's start and end
    can reach the browser together and are then drawn as one, with no change to see.)"""

    def __init__(self, page: Page) -> None:
        self.count = 0
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))

    def _frame(self, payload: bytes | str) -> None:
        if isinstance(payload, str):
            return
        msg = ForwardMsg()
        try:
            msg.ParseFromString(payload)
        except DecodeError:
            return
        if msg.WhichOneof("type") == "script_finished" and msg.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY:
            self.count += 1


async def finished(page: Page, runs: Runs, before: int, want: list[tuple[str, str, int]], timeout_s: float) -> None:
    """Wait for a run finished after ``before`` runs, then for ``want`` on a page with no run
    going and no stale element."""
    deadline = time.perf_counter() + timeout_s
    while runs.count <= before:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"no run of the script finished in {timeout_s:.0f} s")
        await asyncio.sleep(0.05)
    left = max(deadline - time.perf_counter(), 1.0)
    await page.wait_for_function(FINISHED_JS, arg=[list(w) for w in want], polling=100, timeout=left * 1000)


async def texts(page: Page, css: str, pattern: str = "") -> list[str]:
    found = [t.strip() for t in await page.locator(css).all_inner_texts()]
    return [t for t in found if not pattern or re.search(pattern, t)]


async def page_errors(page: Page, step: str) -> list[str]:
    return [f"{step}: {e}" for e in await page.evaluate(PAGE_ERRORS_JS)]


async def run_script(
    page: Page, runs: Runs, url: str, xrays: list[Path], timeout_s: float, stage: list[str]
) -> tuple[dict, dict, list[str]]:
    """One round of the session's script on a fresh page: (step times, page texts, errors);
    ``stage`` holds the name of the step under way (for the error of a timeout)."""
    times: dict[str, float] = {}
    read: dict[str, list[str]] = {}
    errors: list[str] = []

    stage[0] = "open X-ray triage"
    await page.goto(f"{url}/xray", wait_until="domcontentloaded")
    await finished(
        page, runs, 0, [('[data-testid="stAlertContentInfo"]', "Upload one or more chest X-rays", 1)], timeout_s
    )
    stage[0] = "choose model"
    chooser = page.locator('[data-testid="stMultiSelect"]').filter(has_text="For your uploads")
    box = chooser.locator("input")
    before = runs.count
    await box.click()
    await box.fill(UPLOAD_MODEL)
    await page.keyboard.press("Enter")
    await page.keyboard.press("Escape")
    await finished(
        page, runs, before, [('[data-testid="stMultiSelect"]', re.escape(f"{UPLOAD_MODEL} (demo)"), 1)], timeout_s
    )
    errors += await page_errors(page, "choose model")

    async def step(name: str, action, want: list[tuple[str, str, int]]) -> None:
        stage[0] = name
        before = runs.count
        start = time.perf_counter()
        await action()
        await finished(page, runs, before, want, timeout_s)
        times[name] = time.perf_counter() - start
        errors.extend(await page_errors(page, name))

    # 2. upload both X-rays; both results drawn down to their report buttons
    await step(
        "upload",
        lambda: page.locator("input[type=file]").first.set_input_files([str(p) for p in xrays]),
        [
            ('[data-testid="stMetric"]', "Predicted", 2),
            ('[data-testid="stCaptionContainer"]', "for target class", 2),
            ('[data-testid="stDownloadButton"]', "Download case report", 2),
        ],
    )
    read["upload"] = await xray_texts(page)

    # 3. the Grad-CAM target class
    async def choose_target() -> None:
        box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Target class").locator("input")
        await box.click()
        await box.fill(TARGET)  # filters the options down to this one
        await page.keyboard.press("Enter")

    await step(
        "target",
        choose_target,
        [
            ('[data-testid="stCaptionContainer"]', f"for target class {TARGET}\\.", 2),
            ('[data-testid="stDownloadButton"]', "Download case report", 2),
        ],
    )
    read["target"] = await xray_texts(page)

    # 4. Similar cases, searched with the uploads
    await step(
        "similar",
        lambda: page.get_by_role("link", name="Similar cases").first.click(),
        [
            ('[data-testid="stMarkdownContainer"]', "most similar of", 1),
            ("h4", r"^\d+\. P-", 1),
            (".js-plotly-plot", "", 1),
            ('[data-testid="stExpander"]', "About this search", 1),
        ],
    )
    read["similar"] = await texts(page, "h4", r"^\d+\. P-")

    # 5. CT volume, the COVID-19 demo CT
    stage[0] = "open CT volume"
    before = runs.count
    await page.get_by_role("link", name="CT volume").first.click()
    await finished(page, runs, before, [('[data-testid="stButton"]', "Demo CT: COVID-19", 1)], timeout_s)
    await step(
        "ct",
        lambda: page.get_by_role("button", name="Demo CT: COVID-19").click(),
        [
            ('[data-testid="stMetric"]', "", 3),
            (".js-plotly-plot", "", 3),
            ('[data-testid="stDownloadButton"]', "Download case report", 1),
        ],
    )
    read["ct"] = await texts(page, '[data-testid="stMetric"]') + await texts(
        page, '[data-testid="stCaptionContainer"]', "like its training data"
    )
    return times, read, errors


async def xray_texts(page: Page) -> list[str]:
    """Per X-ray: its name, the headline, the models' OOD checks and the map's caption."""
    return (
        await texts(page, '[data-testid="stHeading"]', r"\.png$")
        + await texts(page, '[data-testid="stMetric"]')
        + await texts(page, '[data-testid="stCaptionContainer"]', r"Like its training data\?|for target class")
    )


async def session(
    context, url: str, xrays: list[Path], rounds: int, timeout_s: float, shots: Path | None
) -> SessionRun:
    run = SessionRun()
    for k in range(rounds):
        page = await context.new_page()
        runs = Runs(page)
        stage = [""]
        try:
            times, read, errors = await run_script(page, runs, url, xrays, timeout_s, stage)
            run.times.append(times)
            run.results.append(read)
            run.errors += errors
        except Exception as e:  # a timeout or a vanished element: an error of this session
            run.errors.append(f"{stage[0]}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            if shots is not None:
                await page.screenshot(path=str(shots / f"failed-{id(run)}-{k}.png"), full_page=True)
        finally:
            await page.close()
    return run


async def run_sessions(
    n: int, mode: str, url: str, xrays: list[Path], rounds: int, timeout_s: float, shots: Path | None = None
):
    """N sessions at once; returns (runs, wall seconds). A failed round's page is saved as a
    screenshot in ``shots``."""
    async with async_playwright() as p:
        launch = dict(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        browsers = [await p.chromium.launch(**launch) for _ in range(n if mode == "browsers" else 1)]
        contexts = [
            await browsers[i % len(browsers)].new_context(viewport={"width": 1400, "height": 1000}) for i in range(n)
        ]
        start = time.perf_counter()
        runs = await asyncio.gather(*(session(c, url, xrays, rounds, timeout_s, shots) for c in contexts))
        wall = time.perf_counter() - start
        for c in contexts:
            await c.close()
        for b in browsers:
            await b.close()
    return runs, wall


# -- the benchmark --------------------------------------------------------------------------


def write_xrays(folder: Path) -> list[Path]:
    """Two 512 px phantoms (COVID-19 and viral pneumonia) as PNG files."""
    paths = []
    for name, label, seed in (("xray-a.png", "COVID-19", 4101), ("xray-b.png", "Viral pneumonia", 4102)):
        path = folder / name
        path.write_bytes(generate_xray(label, 0.7, seed=seed, size=512).to_png())
        paths.append(path)
    return paths


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def log_problems(text: str) -> list[str]:
    return [line for line in text.splitlines() if LOG_PROBLEM.search(line)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,4,8", help="numbers of concurrent sessions, comma separated")
    parser.add_argument("--rounds", type=int, default=2, help="scripts each session runs, one after another")
    parser.add_argument("--patients", type=int, default=8, help="patients in the demo library")
    parser.add_argument("--port", type=int, default=0, help="server port (0: a free one)")
    parser.add_argument(
        "--browser-mode",
        choices=("contexts", "browsers"),
        default="contexts",
        help="one Chromium with a context per session, or one Chromium per session",
    )
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="NAME=VALUE", help="extra environment of the server"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a step may take before it is an error")
    parser.add_argument("--keep-log", action="store_true", help="keep the temporary folder with the server's log")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    counts = [int(v) for v in args.sessions.split(",") if v.strip()]
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: install Debian's chromium")
    extra_env = dict(item.split("=", 1) for item in args.server_env)

    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    log = work / "streamlit.log"
    shots = work if args.keep_log else None
    xrays = write_xrays(work)
    built_s = build_library(work / "library", args.patients)
    print(f"demo library ({args.patients} patients) built in {built_s:.1f} s (left out of every figure)")
    env = {k: v for k, v in os.environ.items() if k != "DASHBOARD_WEIGHTS_DIR"}
    env.update({"DASHBOARD_LIBRARY": str(work / "library"), "DASHBOARD_DEMO_PATIENTS": str(args.patients), **extra_env})
    t0 = time.perf_counter()
    server_running = ExitStack()  # closed after the figures, which are taken with the server up
    try:
        server = server_running.enter_context(streamlit_server(env, log, port=args.port, start_timeout_s=120.0))
    except RuntimeError as e:  # it did not start: the message holds the last lines of its log
        raise SystemExit(f"{e}\nserver log: {log}") from None
    url = server.url
    print(f"server up in {time.perf_counter() - t0:.1f} s; pid {server.pid}; env {extra_env or 'default'}")
    sampler = Sampler(server.pid)
    sampler.start()
    figures: dict[str, object] = {"library_build_s": built_s, "mode": args.browser_mode, "server_env": extra_env}
    rows = []
    try:
        before = sampler.snapshot()
        runs, wall = asyncio.run(run_sessions(1, args.browser_mode, url, xrays, 1, args.timeout, shots))
        warm = runs[0]
        if warm.errors:
            print("warm-up errors:", *warm.errors, sep="\n  ")
        print(
            f"warm-up session (models loaded, search index built): {wall:.1f} s; "
            f"server RSS {sampler.snapshot()['peak_rss_mb']:.0f} MB"
        )
        figures["warmup_s"] = wall
        reference = warm.results[0] if warm.results else None
        log_seen = len(log.read_text(errors="replace"))
        base_rate = base_rss = None
        print(
            f"\n{'N':>2} {'errors':>6} {'p50 s':>6} {'p95 s':>6} {'analyses/min':>12} {'ratio':>5} "
            f"{'peak RSS':>9} {'growth':>7}  CPU s: server / browser / driver / bench, wall s"
        )
        for n in counts:
            before = sampler.snapshot()
            runs, wall = asyncio.run(run_sessions(n, args.browser_mode, url, xrays, args.rounds, args.timeout, shots))
            after = sampler.snapshot()
            errors = [e for r in runs for e in r.errors]
            for i, r in enumerate(runs):
                for k, got in enumerate(r.results):
                    if reference is not None and got != reference:
                        diff = [s for s in STEPS if got.get(s) != reference.get(s)]
                        errors.append(f"session {i} round {k}: results differ from the 1-session run in {diff}")
                        if len(errors) < 5:
                            for s in diff:
                                errors.append(f"  {s}: {got.get(s)} != {reference.get(s)}")
            text = log.read_text(errors="replace")
            problems = log_problems(text[log_seen:])
            log_seen = len(text)
            errors += [f"server log: {line[:200]}" for line in problems if "Traceback" in line or "Unexpected" in line]
            times = [t for r in runs for round_ in r.times for t in round_.values()]
            per_step = {s: [round_[s] for r in runs for round_ in r.times if s in round_] for s in STEPS}
            done = sum(len(round_) for r in runs for round_ in r.times)
            rate = done / wall * 60
            if base_rate is None and rate > 0:
                base_rate = rate
            cpu = {g: after[g] - before[g] for g in ("server", "browser", "driver", "bench")}
            rss = after["peak_rss_mb"]
            if base_rss is None:
                base_rss = rss
            row = {
                "sessions": n,
                "rounds": args.rounds,
                "errors": len(errors),
                "error_lines": errors[:40],
                "p50_s": statistics.median(times) if times else float("nan"),
                "p95_s": percentile(times, 0.95),
                "step_median_s": {s: statistics.median(v) for s, v in per_step.items() if v},
                "analyses": done,
                "wall_s": wall,
                "analyses_per_min": rate,
                "ratio": rate / base_rate if base_rate else float("nan"),
                "peak_rss_mb": rss,
                "rss_growth_mb": rss - base_rss,
                "server_hwm_mb": vm_hwm_mb(server.pid),
                "cpu_s": cpu,
                "server_cpu_s_per_analysis": cpu["server"] / done if done else float("nan"),
                "log_lines": problems[:40],
                "log_problem_count": len(problems),
                "load_avg": os.getloadavg(),
            }
            rows.append(row)
            print(
                f"{n:>2} {len(errors):>6} {row['p50_s']:>6.2f} {row['p95_s']:>6.2f} {rate:>12.1f} "
                f"{row['ratio']:>5.2f} {rss:>6.0f} MB {rss - base_rss:>+4.0f} MB  "
                f"{cpu['server']:.0f} / {cpu['browser']:.0f} / {cpu['driver']:.0f} / {cpu['bench']:.0f}, {wall:.0f}"
            )
            print(
                "   step medians (s): "
                + ", ".join(f"{s} {v:.2f}" for s, v in row["step_median_s"].items())
                + f"; server CPU per analysis {row['server_cpu_s_per_analysis']:.2f} s"
                + f"; load average {row['load_avg'][0]:.1f}; server log lines flagged: {len(problems)}"
            )
            for line in errors[:12]:
                print(f"   error: {line}")
            for line in problems[:6]:
                print(f"   log: {line[:160]}")
    finally:
        sampler.stop()
        server_running.close()
        if args.keep_log:
            print(f"server log: {log}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    figures["runs"] = rows
    figures["reference"] = reference
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
