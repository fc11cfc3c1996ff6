"""Scale of the run pages: a 2000-alpha run (6005 tasks) and 10,000 runs, through a real Flower.

    python bench/web_scale.py [--alphas 2000] [--runs 10000] [--reps 5] [--browser]

Starts its own redis-server and ``python cli.py flower`` (basic auth), writes the records
through the ledger's own scripts (no worker: a real 2000-alpha sweep takes minutes and
the pages only read the record): one run of N alphas whose stages all ran, 1 % of its
train tasks Failed (their evaluates and the cleanups blocked), two log lines a task; then
M small runs. Each URL is fetched --reps times (after one warm-up); the median wall time
of the HTTP request on this machine bounds the server's time. The target is 1 s (issue
17 item 4): each line says the ratio to it. Page sizes show what a browser has to take.

``--browser`` also opens the big run's page in headless Chromium (Playwright, Debian's
``/usr/bin/chromium``): the time until the page is loaded and drawn, the time a click on
the folded branches takes to show them, and, with the run marked Running so the page
polls its live part every second, the longest main-thread task (the browser's own
``longtask`` entries) over five polls: how long the page can stop answering the user.
"""
from __future__ import annotations

import argparse
import base64
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent.parent / "tests")]

import conftest  # noqa: E402
from pipeline.definition import flow  # noqa: E402
from pipeline.ledger.records import Ledger  # noqa: E402
from pipeline.redis_conn import make_client  # noqa: E402

AUTH = "bench:bench"
TARGET = 1.0
"""Seconds the issue allows the server for a page or its JSON."""


def big_run(book: Ledger, run_id: str, n: int) -> None:
    keys = flow.task_keys(n)
    fields = {"id": run_id, "flow": flow.FLOW_NAME, "version": 1, "state": "Pending", "submitted": 1, "cancelled": 0,
              "label": "", "queue": "default", "artifacts": "/tmp/bench-art",
              "params": {"alphas": [round(0.001 * (i + 1), 6) for i in range(n)], "n_samples": 100, "sleep": 0.0,
                         "retries": 0, "retry_delay": 0.0, "fail_rate": 0.01, "tick": None}}
    assert book.create_run(run_id, fields, keys)
    failed = {flow.train_key(i) for i in range(0, n, 100)}
    blocked = {k for key in failed for k in flow.downstream(key, n)}
    for key in keys:
        if key in blocked:
            continue
        book.begin_task(run_id, key)
        book.append_log(run_id, key, f"{key.split('[')[0]} begin")
        if key in failed:
            book.finish_task(run_id, key, "Failed", error="InjectedFailure: injected failure (fail rate 0.01)",
                             trigger_failed=flow.downstream(key, n))
            continue
        book.append_log(run_id, key, f"{key.split('[')[0]} end")
        output = {"score": 0.96} if key.startswith(flow.EVALUATE) else {"file": "x"}
        book.finish_task(run_id, key, "Success", output=output)


def small_runs(book: Ledger, m: int) -> None:
    pipe_keys = flow.task_keys(1)
    for j in range(m):
        run_id = f"bench-small-{j:05d}"
        state = "Failed" if j % 7 == 0 else "Success"
        book.create_run(run_id, {"id": run_id, "flow": flow.FLOW_NAME, "version": 1, "state": state, "label": "",
                                 "queue": "default", "params": {"alphas": [1.0]}, "submitted": 1, "cancelled": 0},
                        pipe_keys)


def fetch(url: str) -> tuple[float, int]:
    request = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(AUTH.encode()).decode()})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
    return time.perf_counter() - start, len(body)


def browser_lines(base: str, run_id: str, book: Ledger) -> list[str]:
    """What a user's browser sees of the big run's page (see the module's docstring)."""
    import shutil

    from playwright.sync_api import sync_playwright

    user, password = AUTH.split(":")
    lines = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_context(http_credentials={"username": user, "password": password},
                                   viewport={"width": 1400, "height": 1000}).new_page()
        start = time.perf_counter()
        page.goto(f"{base}/runs/{run_id}", wait_until="load")
        page.wait_for_selector('details[data-fold="branches"]')
        lines.append(f"RATIO browser: page loaded and drawn: {time.perf_counter() - start:.3f} s")
        start = time.perf_counter()
        page.locator('details[data-fold="branches"] summary').first.click()
        page.wait_for_function("document.querySelector('details[data-fold=\"branches\"]').open")
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        lines.append(f"RATIO browser: unfold the {run_id} branches on a click: {time.perf_counter() - start:.3f} s")
        book.update_run(run_id, state="Running", ended="")  # the page now polls its live part
        page.goto(f"{base}/runs/{run_id}", wait_until="load")
        page.evaluate("""() => { window.__long = []; new PerformanceObserver(l => l.getEntries().forEach(
            e => window.__long.push(e.duration))).observe({type: 'longtask', buffered: false}); }""")
        page.wait_for_timeout(5500)
        longest = page.evaluate("() => Math.max(0, ...window.__long)")
        count = page.evaluate("() => window.__long.length")
        lines.append(f"RATIO browser: live polling for 5.5 s: longest main-thread task {longest / 1000:.3f} s "
                     f"({count} tasks over 50 ms)")
        browser.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alphas", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--browser", action="store_true", help="also time the big run's page in headless Chromium")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="web-scale-"))
    server = conftest.start_redis(work / "redis")
    flower = None
    try:
        book = Ledger(make_client(server.url), 3600)
        t0 = time.perf_counter()
        run_id = "bench-big-run"
        big_run(book, run_id, args.alphas)
        small_runs(book, args.runs)
        print(f"records written in {time.perf_counter() - t0:.1f} s: one run of {args.alphas} alphas "
              f"({len(flow.task_keys(args.alphas))} tasks), state {book.get_run(run_id)['state']}; {args.runs} small runs")
        flower, base, _env = conftest.start_flower(server.url, work / "flower.log", auth=AUTH)
        urls = {
            "run page": f"/runs/{run_id}",
            "run page, live part (polled every second)": f"/runs/{run_id}/live",
            "run JSON (status --json)": f"/api/runs/{run_id}",
            "run page, every task (?all=1)": f"/runs/{run_id}?all=1",
            f"runs list, page 100 of {args.runs}": "/runs?page=100",
            "runs list filtered (state=Failed, page 20)": "/runs?state=Failed&page=20",
            "runs JSON, offset 9000": "/api/runs?limit=20&offset=9000",
        }
        for what, path in urls.items():
            fetch(base + path)  # warm-up: templates compiled, connections open
            samples = [fetch(base + path) for _ in range(args.reps)]
            times = sorted(s[0] for s in samples)
            median = statistics.median(times)
            print(f"RATIO {what}: {median:.3f} s median ({times[0]:.3f}..{times[-1]:.3f}), "
                  f"{samples[0][1] / 1e3:.0f} kB; {median / TARGET:.2f} x the 1 s target")
        if args.browser:
            for line in browser_lines(base, run_id, book):
                print(line)
    finally:
        if flower is not None:
            conftest.stop_process(flower)
        conftest.stop_process(server.proc)
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
