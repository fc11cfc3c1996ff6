"""The run pages served by ``python cli.py flower``: a real Flower process, Redis and worker.

The JSON under /api/runs must be the CLI's --json documents; the pages must show the run
record (not Flower's memory of events), escape what stages print, check run ids as the
CLI does, and accept actions only as authenticated POSTs carrying the _xsrf token.
"""
from __future__ import annotations

import base64
import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import FLOWER_AUTH, pipeline_env, poll, run_cli, start_flower, stop_process
from pipeline.definition import flow
from test_sweep_integration import ledger_for


class Browser:
    """A tiny HTTP client with cookies and basic auth, that does not follow redirects."""

    def __init__(self, base: str, auth: str | None = FLOWER_AUTH) -> None:
        self.base = base
        self.auth = auth
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, path: str, data: dict | None = None, auth: str | None = "default"):
        """(status, headers, body text); HTTP errors are returned, not raised."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body)
        auth = self.auth if auth == "default" else auth
        if auth:
            request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read().decode()

    def get(self, path: str, **kwargs):
        return self.request(path, **kwargs)

    def json(self, path: str):
        status, _headers, body = self.get(path)
        assert status == 200, body
        return json.loads(body)

    def xsrf(self, path: str) -> str:
        """The _xsrf token of the form on ``path`` (the page also sets the cookie)."""
        status, _headers, body = self.get(path)
        assert status == 200, body
        return re.search(r'name="_xsrf" value="([^"]+)"', body).group(1)


@pytest.fixture(scope="module")
def web_server(redis_server, worker, tmp_path_factory):
    """Flower with the run pages, behind basic auth, against the test Redis and worker: one
    process for the module (it reads the record afresh each request; tests flush Redis)."""
    tmp = tmp_path_factory.mktemp("web")
    proc, base, env = start_flower(redis_server.url, tmp / "flower.log", PIPELINE_ARTIFACTS=str(tmp / "art"))
    yield base, env
    stop_process(proc)


@pytest.fixture
def web(web_server, clean_redis):
    """A fresh client (its own cookies) of the module's Flower, on a flushed Redis."""
    base, env = web_server
    return Browser(base), env


def failed_run(env: dict, alphas=("1.0", "0.1"), sleep: str = "0") -> str:
    """A sweep whose every train_model attempt fails (--fail-rate 1): Failed, evaluates and cleanups blocked."""
    result = run_cli("sweep", "--alphas", *alphas, "--fail-rate", "1", "--sleep", sleep, "--json", env=env)
    assert result.returncode == 1, result.stderr
    return json.loads(result.stdout)["run_id"]


def cli_json(env: dict, *args: str):
    result = run_cli(*args, "--json", env=env)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_json_api_is_the_cli_documents_and_pages_show_the_failure(web):
    browser, env = web
    run_id = failed_run(env)
    other = cli_json(env, "run", "--alpha", "0.5")["run_id"]

    assert browser.json(f"/api/runs/{run_id}") == cli_json(env, "status", run_id)
    assert browser.json("/api/runs") == cli_json(env, "runs")
    assert [d["run_id"] for d in browser.json("/api/runs?state=Failed")] == [run_id]
    assert [d["run_id"] for d in browser.json("/api/runs?limit=1")] == [other]
    assert [d["run_id"] for d in browser.json("/api/runs?limit=1&offset=1")] == [run_id]
    assert browser.json(f"/api/runs/{run_id}/logs") == cli_json(env, "logs", run_id)
    assert browser.json(f"/api/runs/{run_id}/logs?task=download_dataset") == cli_json(
        env, "logs", run_id, "--task", "download_dataset")

    status, _headers, page = browser.get("/runs")
    assert status == 200 and f'href="/runs/{run_id}"' in page and f'href="/runs/{other}"' in page
    status, headers, page = browser.get(f"/runs/{run_id}")
    assert status == 200 and headers["X-Run-State"] == "Failed"
    failed = re.findall(r'class="sc-node state-Failed"[^>]*data-key="([^"]+)"', page)
    blocked = re.findall(r'class="sc-node state-TriggerFailed"[^>]*data-key="([^"]+)"', page)
    assert sorted(failed) == ["train_model[0]", "train_model[1]"]
    cleanups = [flow.cleanup_key(j) for j in range(flow.n_cleanups(2))]
    assert sorted(blocked) == sorted(["evaluate_model[0]", "evaluate_model[1]", *cleanups])
    assert "InjectedFailure: injected failure (fail rate 1.0)" in page
    assert 'id="restart-button"' in page and 'id="cancel-button"' not in page
    assert "download_dataset begin" in page  # the logs section

    status, _headers, page = browser.get(f"/runs/{other}")
    assert 'id="restart-button"' not in page  # every task succeeded: nothing to restart
    assert "<td>0.5</td>" in page  # the results table, alpha -> R^2

    anonymous = {k: v for k, v in env.items() if k != "FLOWER_BASIC_AUTH"}  # a shell without the credentials
    line = run_cli("run", "--alpha", "0.25", env=anonymous).stderr
    assert f"follow it in the browser: {browser.base}/runs/" in line, line

    status, _headers, workers = browser.get("/workers")
    assert status == 200 and 'href="/runs"' in workers  # one click away from Flower's own pages


def test_run_ids_are_checked_as_the_cli_does_and_auth_is_required(web):
    browser, env = web
    for path in ("/runs/bad%20id", "/api/runs/bad%20id", "/runs/" + "x" * 65, "/api/runs/a.b/logs"):
        status, _headers, body = browser.get(path)
        assert status == 400 and "invalid run id" in body, (path, body)
    status, _headers, body = browser.get("/api/runs/20000101T000000Z-abcdef")
    assert status == 404 and "no run" in body
    status, _headers, body = browser.get("/api/runs?state=Bogus")
    assert status == 400 and "Bogus" in body
    for path in ("/runs", "/api/runs", "/api/runs/20000101T000000Z-abcdef"):
        assert browser.get(path, auth=None)[0] == 401
        assert browser.get(path, auth="ops:wrong")[0] == 401


def test_what_stages_print_is_shown_as_text(web, clean_redis):
    browser, env = web
    run_id = failed_run(env)
    book = ledger_for(clean_redis.url)
    book.append_log(run_id, "download_dataset", "<script>alert('stage')</script> & <b>bold</b>")
    status, _headers, page = browser.get(f"/runs/{run_id}")
    assert status == 200
    assert "&lt;script&gt;alert(&#x27;stage&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "<script>alert" not in page and "<b>bold" not in page
    status, _headers, live = browser.get(f"/runs/{run_id}/live")
    assert "&lt;script&gt;alert" in live and "<script>alert" not in live


def test_restart_and_cancel_are_authenticated_posts_with_the_xsrf_token(web, clean_redis):
    browser, env = web
    run_id = failed_run(env)
    token = browser.xsrf(f"/runs/{run_id}")

    assert browser.request(f"/runs/{run_id}/restart", data={})[0] == 403  # no token
    assert browser.request(f"/runs/{run_id}/restart", data={"_xsrf": token}, auth=None)[0] == 401
    assert browser.get(f"/runs/{run_id}/restart")[0] == 405
    assert browser.json(f"/api/runs/{run_id}")["state"] == "Failed"  # none of these restarted it

    browser.request(f"/runs/{run_id}/restart", data={"_xsrf": token, "fail_rate": "2"})
    assert "error: fail rate 2.0 is outside 0..1" in browser.get(f"/runs/{run_id}")[2]  # the CLI's line
    assert browser.json(f"/api/runs/{run_id}")["state"] == "Failed"

    status, headers, _body = browser.request(f"/runs/{run_id}/restart", data={"_xsrf": token, "fail_rate": "0"})
    assert status == 303 and headers["Location"] == f"/runs/{run_id}"
    poll(lambda: browser.json(f"/api/runs/{run_id}")["state"] == "Success", "the restarted run's Success", 60)
    assert browser.json(f"/api/runs/{run_id}")["params"]["fail_rate"] == 0.0
    status, _headers, page = browser.get(f"/runs/{run_id}")
    assert f"run {run_id} restarted (failed tasks): 9 task(s) run again, fail_rate 0.0" in page

    status, _headers, _body = browser.request(f"/runs/{run_id}/restart", data={"_xsrf": token})
    _status, _headers, page = browser.get(f"/runs/{run_id}")
    assert "error: every task of run" in page  # the CLI's refusal, on the page
    assert 'id="restart-from-button"' in page and 'id="restart-button"' not in page  # restart --from needs it

    before = {t["key"]: t["attempts"] for t in browser.json(f"/api/runs/{run_id}")["tasks"]}
    status, _headers, _body = browser.request(f"/runs/{run_id}/restart", data={
        "_xsrf": token, "from": "download_dataset", "refresh_cache": "1"})  # restart --from ... --refresh-cache
    assert status == 303
    poll(lambda: browser.json(f"/api/runs/{run_id}")["state"] == "Success", "the run restarted from download", 60)
    doc = browser.json(f"/api/runs/{run_id}")
    assert all(t["attempts"] == before[t["key"]] + 1 for t in doc["tasks"]) and doc["params"]["cache"] == "refresh"
    assert f"run {run_id} restarted (from download_dataset): 11 task(s) run again, cache refresh" in browser.get(
        f"/runs/{run_id}")[2]
    browser.request(f"/runs/{run_id}/restart", data={"_xsrf": token, "from": "no_such_task"})
    notice = re.search(r'role="status"[^>]*>(.*?)</div>', browser.get(f"/runs/{run_id}")[2], re.S)
    assert notice and "error: --from: unknown task key" in notice.group(1) and "no_such_task" in notice.group(1), (
        notice and notice.group(1))

    slow = cli_json(env, "run", "--alpha", "0.5", "--sleep", "20", "--no-wait")["run_id"]
    poll(lambda: browser.json(f"/api/runs/{slow}")["state"] == "Running", "the slow run Running", 30)
    assert 'id="cancel-button"' in browser.get(f"/runs/{slow}")[2]
    status, _headers, _body = browser.request(f"/runs/{slow}/cancel", data={"_xsrf": token})
    assert status == 303
    assert browser.json(f"/api/runs/{slow}")["state"] == "Cancelled"


def test_without_basic_auth_pages_are_read_only_and_local(clean_redis, worker, tmp_path):
    env = pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS=str(tmp_path / "art"))
    refused = run_cli("flower", "--address", "0.0.0.0", "--port", "1", env=env)
    assert refused.returncode == 2 and "FLOWER_BASIC_AUTH" in refused.stderr
    run_id = failed_run(env)
    proc, base, _env = start_flower(clean_redis.url, tmp_path / "flower.log", auth=None)
    try:
        browser = Browser(base, auth=None)
        status, _headers, page = browser.get(f"/runs/{run_id}")
        assert status == 200 and "read-only" in page and 'id="restart-button"' not in page
        token = re.search(r"_xsrf=([^;]+)", "; ".join(f"{c.name}={c.value}" for c in browser.jar)).group(1)
        status, _headers, body = browser.request(f"/runs/{run_id}/restart", data={"_xsrf": token})
        assert status == 403 and "read-only" in body
        assert browser.json(f"/api/runs/{run_id}")["state"] == "Failed"
    finally:
        stop_process(proc)


def test_flows_page_quick_run_checks_like_the_cli_and_opens_the_new_run(web, clean_redis):
    browser, env = web
    first = cli_json(env, "run", "--alpha", "0.5")["run_id"]
    assert browser.json("/api/flows") == cli_json(env, "flows")
    status, _headers, page = browser.get("/flows")
    assert status == 200 and 'value="1.0 0.1 0.01 0.001 0.0001 0.00001"' in page and 'name="n_samples" value="100"' in page
    token = browser.xsrf("/flows")
    form = {"_xsrf": token, "alphas": "1.0 0.1", "n_samples": "100", "sleep": "0", "retries": "0",
            "retry_delay": "0", "fail_rate": "0", "label": "", "artifacts": ""}

    book = ledger_for(clean_redis.url)
    for field, value, line in (("alphas", "1.0 -0.5", "alpha -0.5 is negative: alphas must be &gt;= 0"),
                               ("fail_rate", "2", "fail rate 2.0 is outside 0..1"),
                               ("n_samples", "many", "n-samples &#x27;many&#x27; is not a whole number"),
                               ("label", "a b", "label &#x27;a b&#x27; is not a valid queue name")):
        status, _headers, page = browser.request("/flows", data={**form, field: value})
        assert status == 400 and f"error: {line}" in page, page[page.find("form-error"):][:300]
        assert f'value="{value}"' in page  # what the user typed stays in the form
    cli_line = run_cli("sweep", "--alphas", "1.0", "-0.5", env=env).stderr.strip()
    assert cli_line == "error: alpha -0.5 is negative: alphas must be >= 0"
    assert book.r.zcard(book.runs_index) == 1  # nothing recorded, nothing enqueued

    status, headers, _body = browser.request("/flows", data={**form, "label": ""})
    assert status == 303
    run_id = headers["Location"].rsplit("/", 1)[1]
    assert run_id != first
    poll(lambda: browser.json(f"/api/runs/{run_id}")["state"] == "Success", "the quick run's Success", 60)
    doc = browser.json(f"/api/runs/{run_id}")
    assert doc["params"]["alphas"] == [1.0, 0.1] and doc["params"]["n_samples"] == 100
    assert doc["artifacts"] == str(__import__("pathlib").Path(env["PIPELINE_ARTIFACTS"]).resolve() / run_id)


def test_labels_page_shows_workers_waiting_messages_and_unconsumed_queues(web, worker):
    browser, env = web
    waiting = cli_json(env, "run", "--alpha", "0.5", "--label", "nobody-here", "--no-wait")["run_id"]
    def known() -> dict | None:  # pool and concurrency come from Flower's inspect of the worker, once it has one
        found = {q["queue"]: q for q in browser.json("/api/labels")}
        return found if all(w["pool"] for w in found["default"]["workers"]) else None

    labels = poll(known, "Flower's inspect reply of the session worker", 30)

    default = labels["default"]
    assert [w["pool"] for w in default["workers"]] == ["threads"]  # the session's worker
    assert [w["concurrency"] for w in default["workers"]] == [10]
    assert 0 <= default["workers"][0]["heartbeat_age"] < 30
    assert default["warning"] is None
    from pipeline.ledger.versions import current_digest  # which code each worker runs

    assert default["workers"][0]["digest"] == current_digest() and default["workers"][0]["version"] >= 1

    lonely = labels["nobody-here"]
    assert lonely["workers"] == [] and lonely["active_runs"] == [waiting]
    assert lonely["waiting_messages"] == 1  # download_dataset's message, queued
    assert lonely["warning"].startswith("1 run(s) wait on queue 'nobody-here' and no live worker consumes it")
    status, _headers, page = browser.get("/labels")
    assert status == 200 and "no live worker consumes it: python cli.py worker --label nobody-here" in page
    assert current_digest()[:12] in page
    run_cli("cancel", waiting, env=env)


def test_submission_points_to_the_run_page_only_when_it_answers(clean_redis, worker, tmp_path):
    from conftest import free_port

    port = free_port()  # nothing listens there
    env = pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS=str(tmp_path / "art"),
                       PIPELINE_FLOWER_URL=f"http://127.0.0.1:{port}")
    result = run_cli("run", "--alpha", "0.5", env=env)
    assert result.returncode == 0, result.stderr
    run_id = result.stderr.split("run ", 1)[1].split()[0]
    assert (f"follow it in a browser: python cli.py flower, then open http://127.0.0.1:{port}/runs/{run_id}\n"
            in result.stderr)


def test_flowers_broker_page_counts_the_queues_of_the_configured_redis(web):
    """Flower's own Broker page: with our kombu transport the connection's URI names the
    transport's class path, which Flower's broker client does not know; the launcher gives
    it the configured URL."""
    browser, env = web
    cli_json(env, "run", "--alpha", "0.5", "--label", "nobody-here", "--no-wait")
    status, _headers, page = browser.get("/broker")
    assert status == 200 and "kombu_redis:Transport" not in page
    assert "redis://127.0.0.1:" in page and "default" in page


def test_a_cached_runs_page_names_where_each_task_came_from(web):
    """The run page and /api/runs/<id> show which tasks came from the cache, and from which run."""
    browser, env = web
    rows = ["--n-samples", "123"]  # keys of this test's own: the module's tests share one artifacts root
    first = cli_json(env, "sweep", "--alphas", "1.0", "--cache", *rows)["run_id"]
    second = cli_json(env, "sweep", "--alphas", "1.0", "0.1", "--cache", *rows)["run_id"]
    doc = browser.json(f"/api/runs/{second}")
    cached = {t["key"]: t["cached_from"]["run_id"] for t in doc["tasks"] if t["state"] == "Cached"}
    assert cached == {k: first for k in ("download_dataset", "preprocess_dataset", "train_model[0]",
                                         "evaluate_model[0]")}
    assert doc["params"]["cache"] == "on"
    status, _headers, page = browser.get(f"/runs/{second}")
    assert status == 200
    assert page.count('state-badge state-Cached">Cached') == 4
    assert page.count(f'from <a href="{first}"') == 4 and "<dt>cache</dt><dd>on</dd>" in page
