"""The URL table of the run pages, added to Flower's (see :mod:`pipeline.web.server`)."""
from __future__ import annotations

from tornado.web import StaticFileHandler, url

from pipeline.web import actions, flows, labels, runs, schedule

RUN_ID = r"([^/]+)"
"""A run id in a path: anything up to the next slash, then checked as the CLI checks it."""


def routes(static_dir: str) -> list:
    """Our handlers, in match order."""
    return [
        url(r"/runs/?", runs.RunsPage, name="pipeline-runs"),
        url(rf"/runs/{RUN_ID}/(restart|cancel)", actions.RunAction),
        url(rf"/runs/{RUN_ID}(?:/(live))?", runs.RunPage, name="pipeline-run"),
        url(r"/flows/?", flows.FlowsPage, name="pipeline-flows"),
        url(r"/api/flows/?", flows.FlowsApi),
        url(r"/labels/?", labels.LabelsPage, name="pipeline-labels"),
        url(r"/api/labels/?", labels.LabelsApi),
        url(r"/schedule/?", schedule.SchedulePage, name="pipeline-schedule"),
        url(r"/schedule/(pause|resume|backfill)", schedule.SchedulePage),
        url(r"/api/schedule/?", schedule.ScheduleApi),
        url(r"/api/runs/?", runs.RunsApi),
        url(rf"/api/runs/{RUN_ID}/logs", runs.RunLogsApi),
        url(rf"/api/runs/{RUN_ID}", runs.RunApi),
        url(r"/pipeline-static/(.*)", StaticFileHandler, {"path": static_dir}, name="pipeline-static"),
    ]
