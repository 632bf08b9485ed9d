"""The FastAPI application, built by a factory so tests need no environment.

Endpoints: ``POST /mutate`` (AdmissionReview v1 and v1beta1; ``POST /webhook`` is the same
handler, the path estahn/k8s-image-swapper's chart registers), ``GET /healthz`` (the process
answers), ``GET /readyz`` (config, certificates and backends are loaded, and no task the
webhook depends on has been down for ``supervisor.notReadyAfter``), ``GET /metrics``.

The admission handler never blocks a pod on swapper's own failure: any error, a slow backend or a
malformed pod ends as ``allowed: true`` without a patch, with a warning, a log line and a
metric, inside ``admissionTimeout``. Only a body that is not an AdmissionReview gets HTTP 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect

from swapper import logs, pods
from swapper.access.refusal import denies
from swapper.admission.answer import describe, refusal
from swapper.admission.patches import build_patch
from swapper.admission.review import (
    AdmissionReviewResponse,
    Mode,
    PatchOperation,
    Review,
    build_response,
    containers_of,
    deny_response,
    parse_review,
    secret_frozen,
)
from swapper.backends import Backends
from swapper.config import Config
from swapper.errors import AdmissionError, KubeError, MalformedPod
from swapper.logs import get_logger
from swapper.mutation import (
    Decision,
    Mutator,
    Policy,
    in_container_order,
    requester_of,
)
from swapper.supervisor import Supervisor, TaskSpec

log = get_logger("swapper.admission")

_JSON = "application/json"


def _adds_secret(patch: list[PatchOperation]) -> bool:
    return any(op["path"].startswith("/spec/imagePullSecrets") for op in patch)


def _pod_name(review: Review) -> str:
    """For log lines: the pod's name, else its ``generateName`` and ``*``; whatever its shape."""
    return pods.name_of(review.object, review.name)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body; None when it is longer than ``limit`` bytes, found out from its
    ``Content-Length`` before reading any of it, or while reading a chunked one (never more
    than ``limit`` bytes held)."""
    length = request.headers.get("content-length", "")
    if length.isascii() and length.isdigit() and int(length) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class _Setup:
    """What one request is answered with, from start to end (swapped whole by a reload)."""

    config: Config
    policy: Policy
    mutator: Mutator


class AdmissionHandler:
    """Turns one parsed review into one AdmissionReview response."""

    def __init__(self, config: Config, backends: Backends) -> None:
        self.backends = backends
        self.pull_secrets = backends.pull_secrets
        self.metrics = backends.metrics
        self._setup = self._build(config)
        # Label lookups take a lock each; the label sets are few, so keep the children.
        self._decisions = functools.cache(self.metrics.container_decisions.labels)
        self._requests = functools.cache(self.metrics.admission_requests.labels)

    def _build(self, config: Config) -> _Setup:
        policy = Policy.from_config(config)
        backends = self.backends
        return _Setup(
            config,
            policy,
            Mutator(policy, backends.target, backends.queue, backends.access, backends.signatures),
        )

    @property
    def config(self) -> Config:
        return self._setup.config

    @property
    def policy(self) -> Policy:
        return self._setup.policy

    @property
    def mutator(self) -> Mutator:
        return self._setup.mutator

    def reconfigure(self, config: Config) -> None:
        """Answer new requests under ``config`` (same backends); requests in flight finish
        under the one they started with."""
        self._setup = self._build(config)

    async def __call__(self, review: Review) -> AdmissionReviewResponse:
        setup = self._setup
        config = setup.config
        mode = review.mode(config.dry_run)
        try:
            if review.kind == "Pod" and not isinstance(review.object.get("metadata", {}), dict):
                return self._unchanged(review, "pod", "metadata is not an object")
            count = pods.container_count(review.object) if review.kind == "Pod" else 0
            if count > config.server.max_containers:
                # Tens of thousands of containers would hold the event loop (and everyone
                # else's admission) for seconds and log a line each: the pod is let through.
                limit = config.server.max_containers
                reason = f"{count} containers, more than server.maxContainers ({limit})"
                return self._unchanged(review, "too-many-containers", reason)
            if not (
                setup.mutator.may_wait(mode.side_effects)
                or (mode.side_effects and self.pull_secrets is not None)
            ):
                # Nothing can block (no registry call, no copy to wait for): no timer needed.
                return await self._review(review, mode, setup)
            async with asyncio.timeout(config.admission_timeout):
                return await self._review(review, mode, setup)
        except TimeoutError:
            return self._unchanged(review, "timeout", "timed out")
        except MalformedPod as exc:
            return self._unchanged(review, "pod", str(exc))
        except Exception as exc:  # swapper's own failure never blocks a pod
            log.exception("admission_failed", uid=review.uid)
            return self._unchanged(review, "internal", f"{type(exc).__name__}: {exc}")

    def _unchanged(self, review: Review, stage: str, reason: str) -> AdmissionReviewResponse:
        self.metrics.internal_errors.labels(stage).inc()
        self._requests("timeout" if stage == "timeout" else "error").inc()
        log.warning(
            "admission_unchanged",
            uid=review.uid,
            namespace=review.namespace,
            pod=_pod_name(review),
            stage=stage,
            reason=reason,
        )
        return build_response(
            review.api_version,
            review.uid,
            warnings=[f"swapper: pod left unchanged ({stage}: {reason})"],
        )

    async def _review(self, review: Review, mode: Mode, setup: _Setup) -> AdmissionReviewResponse:
        if review.kind != "Pod":
            self._requests("unchanged").inc()
            return build_response(review.api_version, review.uid)
        policy, mutator = setup.policy, setup.mutator
        settled, candidates = mutator.plan(
            review.object,
            review.namespace,
            containers=containers_of(review),
            secret_frozen=secret_frozen(review, policy.pull_secret),
        )
        decisions = settled
        if candidates:
            who = requester_of(review.object, review.namespace)
            resolved = await mutator.resolve(candidates, who, mode.side_effects)
            decisions = in_container_order(settled, resolved)
        self._record(review, decisions, mode)
        warnings, annotations = describe(decisions, mode)
        if mode.enforces and denies(policy.mirror_references):
            message = refusal(decisions)
            if message is not None:
                self._requests("denied").inc()
                return deny_response(review.api_version, review.uid, message, warnings, annotations)
        patch = (
            build_patch(
                review.object,
                decisions,
                policy.pull_secret,
                may_add_secret=review.operation == "CREATE",
                record_originals=review.operation == "CREATE",
            )
            if mode.enforces
            else None
        )
        if patch and mode.side_effects and self.pull_secrets is not None and _adds_secret(patch):
            try:
                account = pods.service_account(review.object)
                await self.pull_secrets.ensure(review.namespace, account)
            except KubeError as exc:  # the pod would reference a Secret that is not there
                return self._unchanged(review, "pull-secret", str(exc))
        result = ("patched" if patch else "unchanged") if mode.enforces else "dry_run"
        self._requests(result).inc()
        return build_response(review.api_version, review.uid, patch, warnings, annotations)

    def _record(self, review: Review, decisions: list[Decision], mode: Mode) -> None:
        """One metric increment per outcome (``dry_run`` label: audit mode) and one structured
        log line per decision (``dry_run``: nothing was left behind, audit or server-side)."""
        dry = "false" if mode.enforces else "true"
        pod = _pod_name(review)
        dry_run = not mode.side_effects
        counts: dict[str, int] = {}
        records: list[dict[str, Any]] = []
        for d in decisions:
            reason = d.outcome.value
            counts[reason] = counts.get(reason, 0) + 1
            record: dict[str, Any] = {
                "uid": review.uid,
                "namespace": review.namespace,
                "pod": pod,
                "container": d.container.name,
                "source": d.container.image,
                "target": d.target,
                "reason": reason,
                "dry_run": dry_run,
            }
            if d.filter_index is not None:
                record["filter"] = d.filter_index
            if d.copy:
                record["copy"] = d.copy.value
            if d.detail:
                record["detail"] = d.detail
            records.append(record)
        for reason, count in counts.items():
            self._decisions(reason, dry).inc(count)
        logs.info_lines("decision", records, log)


LOG_FLUSHER = "log-flusher"


def create_app(
    config: Config,
    backends: Backends,
    supervisor: Supervisor | None = None,
    handler: AdmissionHandler | None = None,
) -> FastAPI:
    """The app; its lifespan runs the log flusher and ``backends.background`` under
    ``supervisor`` (one is built when none is given) and closes the backends after them."""
    handler = handler or AdmissionHandler(config, backends)
    metrics = backends.metrics
    supervisor = supervisor or Supervisor(metrics, config.supervisor)
    state = {"ready": False}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The flusher first, so it is stopped last: it writes out the others' last lines.
        supervisor.add(TaskSpec(LOG_FLUSHER, logs.flush_periodically))
        for spec in backends.background:
            supervisor.add(spec)
        await supervisor.start()
        state["ready"] = True
        metrics.ready.set(1)
        log.info(
            "ready",
            target=backends.target.endpoint,
            dry_run=config.dry_run,
            swap_policy=config.image_swap_policy.value,
            copy_policy=config.image_copy_policy.value,
        )
        try:
            yield
        finally:
            state["ready"] = False
            metrics.ready.set(0)
            await supervisor.stop()
            await backends.queue.aclose()
            await backends.target.aclose()
            for close in backends.closers:
                await close()

    app = FastAPI(
        title="swapper",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    # /webhook is the path of estahn/k8s-image-swapper's MutatingWebhookConfiguration: a kept
    # webhook configuration (failurePolicy Ignore) would otherwise leave every pod unswapped.
    @app.post("/webhook")
    @app.post("/mutate")
    async def mutate(request: Request) -> Response:
        started = time.perf_counter()
        max_body = config.server.max_request_bytes
        review: Review | None = None
        try:
            try:
                body = await _read_body(request, max_body)
            except ClientDisconnect:  # the API server gave up (its timeout): nobody to answer
                log.info("client_disconnected", path=request.url.path)
                return Response(status_code=400)
            if body is None:  # the rest is not read: the connection is closed after the answer
                metrics.requests_refused.labels("body-too-large").inc()
                log.warning("request_too_large", path=request.url.path, limit=max_body)
                error = f"request body is larger than server.maxRequestBytes ({max_body} bytes)"
                return Response(
                    orjson.dumps({"error": error}),
                    status_code=413,
                    media_type=_JSON,
                    headers={"connection": "close"},
                )
            try:
                review = parse_review(body)
            except AdmissionError as exc:
                metrics.admission_requests.labels("invalid").inc()
                log.warning("bad_request", error=str(exc))
                return Response(
                    orjson.dumps({"error": str(exc)}), status_code=400, media_type=_JSON
                )
            answer = orjson.dumps(await handler(review))
        except Exception as exc:  # never a 500, which also drops the keep-alive connection
            log.exception("request_failed", uid=review.uid if review else None)
            metrics.internal_errors.labels("request").inc()
            if review is None:
                error = f"the request could not be read ({type(exc).__name__})"
                return Response(orjson.dumps({"error": error}), status_code=400, media_type=_JSON)
            metrics.admission_requests.labels("error").inc()
            warning = f"swapper: pod left unchanged (internal: {type(exc).__name__})"
            answer = orjson.dumps(
                build_response(review.api_version, review.uid, warnings=[warning])
            )
        logs.flush_soon()
        metrics.handler_latency.observe(time.perf_counter() - started)
        return Response(answer, media_type=_JSON)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type=_JSON)

    def readiness() -> tuple[bool, list[str]]:
        """Whether the webhook is ready, and the critical tasks down; ``swapper_ready`` is kept
        equal to the answer at every probe and every scrape."""
        started = bool(state["ready"]) and all(check() for check in backends.ready_checks)
        down = supervisor.down() if started else []
        ready = started and not down
        metrics.ready.set(1 if ready else 0)
        return started, down

    @app.get("/readyz")
    async def readyz() -> Response:
        started, down = readiness()
        if not started:
            return Response(b'{"status":"starting"}', status_code=503, media_type=_JSON)
        if down:
            body = orjson.dumps({"status": "not ready", "down": down})
            return Response(body, status_code=503, media_type=_JSON)
        return Response(b'{"status":"ready"}', media_type=_JSON)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        readiness()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
