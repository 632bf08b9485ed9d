"""The baseline: the same stack as ``swapper serve`` (FastAPI, uvicorn, uvloop, httptools, the same
TLS context) answering a fixed ``allowed`` AdmissionReview without reading the request.

``--read-body`` reads the request first; ``--parse`` also parses it as swapper does and answers
``allowed`` for its uid, which is all swapper does for a review that is not about a pod: the
floor under swapper's own per-container work."""

from __future__ import annotations

import argparse

import orjson
from fastapi import FastAPI, Request, Response

from swapper.admission.review import build_response, parse_review
from swapper.admission.server import uvicorn_server
from swapper.tls import server_context

FIXED = (
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",'
    b'"response":{"uid":"fixed","allowed":true}}'
)


def create_bare_app(read_body: bool = False, parse: bool = False) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/mutate")
    async def mutate(request: Request) -> Response:
        if parse:
            review = parse_review(await request.body())
            answer = build_response(review.api_version, review.uid)
            return Response(orjson.dumps(answer), media_type="application/json")
        if read_body:
            await request.body()
        return Response(FIXED, media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> Response:
        return Response(b'{"status":"ready"}', media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--listen-address", default="127.0.0.1:9443")
    parser.add_argument("--read-body", action="store_true", help="read the body, then answer")
    parser.add_argument("--parse", action="store_true", help="parse the review, answer its uid")
    args = parser.parse_args()
    context = server_context(args.cert, args.key)
    app = create_bare_app(args.read_body, args.parse)
    uvicorn_server(app, context, args.listen_address).run()


if __name__ == "__main__":
    main()
