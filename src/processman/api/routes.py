"""The routes of the control API (SPEC 8), relative to where it is mounted (``/api/pm``).

Each route reads its input, calls one public method of the manager and turns the answer, or the
manager's error, into JSON. No route touches a child process.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from processman.api.auth import Authenticator
from processman.api.errors import ApiError
from processman.api.streams import (
    KEEPALIVE,
    StreamHub,
    line_dict,
    log_stream,
    merged_log_stream,
    merged_logs,
    status_stream,
)
from processman.api.wire import (
    StateTexts,
    containment_to_json,
    line_to_json,
    plan_to_json,
    run_to_json,
)
from processman.config import GROUP_PREFIX
from processman.engine.manager import ProcessManager
from processman.engine.runs import Run
from processman.errors import (
    ConfigError,
    NotRunnable,
    ProcessAlreadyRunning,
    ProcessNotFound,
    ProcessNotRunning,
)

DEFAULT_LINES = 100
MAX_LINES = 1000
DEFAULT_RUNS = 20
_WHOLE_NUMBER = re.compile(r"[0-9]{1,30}")
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _invalid(name: str, raw: str, expected: str) -> ApiError:
    shown = raw if len(raw) <= 20 else raw[:20] + "..."
    message = f"Invalid {name}: expected {expected}, got {shown!r}."
    return ApiError(400, message, {name: {"code": "validation_invalid_value", "message": message}})


def parse_lines(raw: str | None) -> int:
    """``lines``: absent means 100; larger than 1000 means 1000; anything but a whole number is an error."""
    if raw is None:
        return DEFAULT_LINES
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise _invalid("lines", raw, f"a whole number from 0 to {MAX_LINES}")
    return min(int(raw), MAX_LINES)


def parse_limit(raw: str | None, most: int) -> int:
    """``limit`` of runs: absent means 20; more than the process keeps means all it keeps."""
    if raw is None:
        return min(DEFAULT_RUNS, most)
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise _invalid("limit", raw, "a whole number of runs")
    return min(int(raw), most)


def parse_flag(name: str, raw: str | None) -> bool:
    if raw is None or raw.lower() in ("0", "false", "no", ""):
        return False
    if raw.lower() in ("1", "true", "yes"):
        return True
    raise _invalid(name, raw, "1 or 0")


def parse_cursor(name: str, raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise _invalid(name, raw, "a log sequence number (a whole number)")
    return int(raw)


class Endpoints:
    def __init__(
        self, manager: ProcessManager, authenticator: Authenticator, hub: StreamHub, keepalive: float
    ) -> None:
        self.manager = manager
        self.authenticator = authenticator
        self.hub = hub
        self.keepalive = keepalive
        self.texts = StateTexts()  # the list's JSON per process, kept between requests

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/list", self.list_processes, methods=["GET"], name="list"),
            Route("/metrics", self.metrics, methods=["GET"], name="metrics"),
            Route("/health", self.health, methods=["GET"], name="health"),
            Route("/reload", self.reload, methods=["POST"], name="reload"),
            Route("/events", self.events, methods=["GET"], name="events"),
            Route("/auth-info", self.auth_info, methods=["GET"], name="auth-info"),
            Route("/openapi.json", self.openapi, methods=["GET"], name="openapi"),
            Route("/logs", self.all_logs, methods=["GET"], name="all-logs"),
            Route("/{id}/start", self.start, methods=["POST"], name="start"),
            Route("/{id}/stop", self.stop, methods=["POST"], name="stop"),
            Route("/{id}/restart", self.restart, methods=["POST"], name="restart"),
            Route("/{id}/signal", self.signal, methods=["POST"], name="signal"),
            Route("/{id}/logs", self.logs, methods=["GET"], name="logs"),
            Route("/{id}/run", self.run, methods=["POST"], name="run"),
            Route("/{id}/runs", self.runs, methods=["GET"], name="runs"),
        ]

    def _id(self, request: Request) -> str:
        """The id asked for; an unknown one is a 404 (see ``errors``) before anything is done."""
        process_id: str = request.path_params["id"]
        if process_id not in self.manager.ids:
            raise ProcessNotFound(process_id)
        return process_id

    def _group(self, name: str) -> list[str]:
        """The ids of a group's processes, in config order."""
        return [state.id for state in self.manager.states() if state.config.group == name]

    def _targets(self, request: Request) -> tuple[str, list[str]]:
        """The id asked for and the processes it means: one process, or every process of ``group:NAME``
        (a group name starts with a letter, so it never reads as an instance "<entry>:<n>"). An
        unknown id or an empty group is a 404 before anything is done."""
        target: str = request.path_params["id"]
        if target in self.manager.ids:
            return target, [target]
        if target.startswith(GROUP_PREFIX):
            members = self._group(target.removeprefix(GROUP_PREFIX))
            if members:
                return target, members
        raise ProcessNotFound(target)

    def _group_query(self, request: Request) -> str | None:
        name = request.query_params.get("group")
        if name is not None and not name:
            raise _invalid("group", name, "a group name")
        return name

    async def list_processes(self, request: Request) -> Response:
        group = self._group_query(request)
        states = self.manager.states()
        if group is not None:
            states = [state for state in states if state.config.group == group]
        body = self.texts.render(states, complete=group is None)
        return Response(body, media_type="application/json")

    async def metrics(self, request: Request) -> Response:
        manager = self.manager
        sampler = manager.resources
        # Imported by the first scrape (and openapi by its first request): serve idles without them.
        from processman.api.prometheus import CONTENT_TYPE, render_metrics, render_notify_metrics

        text = render_metrics(
            manager.states(), manager.manager_usage(), sampler.usage(), sampler.cpu_seconds()
        ) + render_notify_metrics(manager.notifier.stats)
        return Response(text, media_type=CONTENT_TYPE)

    async def health(self, request: Request) -> Response:
        return JSONResponse(containment_to_json(self.manager))

    async def start(self, request: Request) -> Response:
        target, ids = self._targets(request)
        if ids == [target]:
            await self.manager.start_process(target)
            return _message("Process start initiated", target)
        # A group: start those not already started, all at once.
        idle = [state.id for state in map(self.manager.state, ids) if str(state.status) not in _STARTED]
        await _each(self.manager.start_process, idle, ignore=ProcessAlreadyRunning)
        return _message("Group start initiated", target, idle)

    async def stop(self, request: Request) -> Response:
        target, ids = self._targets(request)
        await _each(self.manager.stop_process, ids)
        return _message("Process stopped" if ids == [target] else "Group stopped", target, ids)

    async def restart(self, request: Request) -> Response:
        target, ids = self._targets(request)
        await _each(self.manager.restart_process, ids)
        message = "Process restart initiated" if ids == [target] else "Group restart initiated"
        return _message(message, target, ids)

    async def run(self, request: Request) -> Response:
        """One run now (trigger manual) of a job or one-shot task: the run begun or skipped; 202
        ``{"queued": true}`` when it waits for the run in progress or its dependencies. For
        ``group:NAME``, a run of each of its jobs and tasks (services kept alive are passed over, and
        named in ``passedOver``)."""
        target, ids = self._targets(request)
        if ids == [target]:
            run = await self.manager.run_process(target)
            if run is None:
                return JSONResponse(_queued(target), status_code=202)
            return JSONResponse(run_to_json(run))
        runnable = [state.id for state in map(self.manager.state, ids) if state.config.is_task]
        if not runnable:
            raise NotRunnable(target)
        results = await asyncio.gather(*(self.manager.run_process(process_id) for process_id in runnable))
        answer = {
            "message": "Group run initiated",
            "id": target,
            "ids": runnable,
            "passedOver": [process_id for process_id in ids if process_id not in runnable],
            "runs": [
                _run_or_queued(process_id, run) for process_id, run in zip(runnable, results, strict=True)
            ],
        }
        return JSONResponse(answer)

    async def runs(self, request: Request) -> Response:
        """The run history, newest first (``limit``: 20 by default, at most what the process keeps);
        for ``group:NAME``, its processes' runs together, newest first; for a process removed from the
        config, the runs kept of it."""
        target = request.path_params["id"]
        if target not in self.manager.ids and not target.startswith(GROUP_PREFIX):
            # No longer in the config: the runs kept of it (404 for an id never seen).
            kept = self.manager.runs(target)
            limit = parse_limit(request.query_params.get("limit"), max(len(kept), 1))
            return JSONResponse([run_to_json(run) for run in kept[:limit]])
        target, ids = self._targets(request)
        most = max(self.manager.state(process_id).config.keep_runs for process_id in ids)
        limit = parse_limit(request.query_params.get("limit"), most)
        runs = [run for process_id in ids for run in self.manager.runs(process_id, limit)]
        if ids != [target]:
            runs.sort(key=lambda run: run.started, reverse=True)
        return JSONResponse([run_to_json(run) for run in runs[:limit]])

    async def all_logs(self, request: Request) -> Response:
        """Every process's log (or a group's, ``?group=``), interleaved; ``follow=1`` streams it."""
        group = self._group_query(request)

        def members() -> list[str]:
            return self.manager.ids if group is None else self._group(group)

        return self._merged_logs(request, members)

    def _merged_logs(self, request: Request, members: Callable[[], list[str]]) -> Response:
        lines = parse_lines(request.query_params.get("lines"))
        if not parse_flag("follow", request.query_params.get("follow")):
            return JSONResponse([line_dict(line) for line in merged_logs(self.manager, members(), lines)])
        stream = merged_log_stream(self.manager, self.hub, members, lines=lines, keepalive=self.keepalive)
        return StreamingResponse(stream, media_type="text/event-stream", headers=_STREAM_HEADERS)

    async def signal(self, request: Request) -> Response:
        """``{"signal": "HUP", "tree": false, "force": false}``: to the main process, or every member; for
        ``group:NAME``, to each of its running processes."""
        target, ids = self._targets(request)
        body = await _json_object(request)
        name = body.get("signal")
        if not isinstance(name, str) or not name:
            raise _invalid("signal", repr(name), 'a signal name like "HUP" or "SIGUSR1"')
        flags: dict[str, bool] = {}
        for flag in ("tree", "force"):
            value = body.get(flag, False)
            if not isinstance(value, bool):
                raise _invalid(flag, repr(value), "true or false")
            flags[flag] = value
        if ids == [target]:
            sig, count = await self.manager.signal_process(
                target, name, tree=flags["tree"], force=flags["force"]
            )
            answer = {"message": f"{sig.name} sent", "id": target, "signal": sig.name, "processes": count}
            return JSONResponse(answer)
        count, signalled, sent = 0, [], None
        for process_id in ids:
            try:
                sent, number = await self.manager.signal_process(
                    process_id, name, tree=flags["tree"], force=flags["force"]
                )
            except ProcessNotRunning:
                continue  # a stopped member of a group is passed over
            count += number
            signalled.append(process_id)
        if sent is None:
            raise ProcessNotRunning(target)
        answer = {
            "message": f"{sent.name} sent",
            "id": target,
            "signal": sent.name,
            "processes": count,
            "ids": signalled,
        }
        return JSONResponse(answer)

    async def logs(self, request: Request) -> Response:
        target, ids = self._targets(request)
        if ids != [target]:
            group = target.removeprefix(GROUP_PREFIX)
            return self._merged_logs(request, lambda: self._group(group))
        process_id = target
        query = request.query_params
        lines = parse_lines(query.get("lines"))
        if not parse_flag("follow", query.get("follow")):
            return JSONResponse([line_to_json(line) for line in self.manager.logs(process_id, lines)])
        # EventSource resends its original URL on reconnect, so the header (the newest cursor) wins.
        after = parse_cursor("Last-Event-ID", request.headers.get("last-event-id"))
        if after is None:
            after = parse_cursor("after", query.get("after"))
        stream = log_stream(
            self.manager, self.hub, process_id, lines=lines, after=after, keepalive=self.keepalive
        )
        return StreamingResponse(stream, media_type="text/event-stream", headers=_STREAM_HEADERS)

    async def reload(self, request: Request) -> Response:
        """Re-read the config file and apply it; ``?dryRun=1`` only returns the plan."""
        dry_run = parse_flag("dryRun", request.query_params.get("dryRun"))
        try:
            plan = await self.manager.reload_from_file(dry_run=dry_run)
        except ConfigError as exc:
            problems = [line for line in str(exc).splitlines() if line != "nothing changed"]
            raise ApiError(400, "The config has errors; nothing changed.", {"problems": problems}) from None
        return JSONResponse({"dryRun": dry_run, **plan_to_json(plan)})

    async def events(self, request: Request) -> Response:
        stream = status_stream(self.manager, self.hub, keepalive=self.keepalive)
        return StreamingResponse(stream, media_type="text/event-stream", headers=_STREAM_HEADERS)

    async def auth_info(self, request: Request) -> Response:
        return JSONResponse({"mode": self.authenticator.mode})

    async def openapi(self, request: Request) -> Response:
        from processman.api.openapi import openapi_document

        return JSONResponse(openapi_document(request.scope.get("root_path", "")))


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "The request body is not JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


_STARTED = ("starting", "running")


def _queued(process_id: str) -> dict[str, Any]:
    return {
        "id": process_id,
        "queued": True,
        "message": "Run accepted: it begins after the run in progress, or once its dependencies are met",
    }


def _run_or_queued(process_id: str, run: Run | None) -> dict[str, Any]:
    return _queued(process_id) if run is None else run_to_json(run)


def _message(message: str, process_id: str, ids: list[str] | None = None) -> Response:
    body: dict[str, Any] = {"message": message, "id": process_id}
    if ids is not None and ids != [process_id]:
        body["ids"] = ids  # the processes of a group that were acted on
    return JSONResponse(body)


async def _each(
    action: Callable[[str], Awaitable[None]], ids: list[str], ignore: type[Exception] | None = None
) -> None:
    """``action`` on every id at once; the first error (other than ``ignore``) is raised once all end."""
    results = await asyncio.gather(*(action(process_id) for process_id in ids), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not (ignore and isinstance(result, ignore)):
            raise result


__all__ = ["KEEPALIVE", "Endpoints", "parse_lines"]
