"""The baseline: the same stack as ``swapper serve`` (FastAPI, uvicorn, uvloop, httptools, the same
TLS context) answering a fixed ``allowed`` AdmissionReview without reading the request."""

from __future__ import annotations

import argparse

from fastapi import FastAPI, Request, Response

from swapper.server import uvicorn_server
from swapper.tls import server_context

FIXED = (
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",'
    b'"response":{"uid":"fixed","allowed":true}}'
)


def create_bare_app(read_body: bool = False) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/mutate")
    async def mutate(request: Request) -> Response:
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
    args = parser.parse_args()
    context = server_context(args.cert, args.key)
    uvicorn_server(create_bare_app(args.read_body), context, args.listen_address).run()


if __name__ == "__main__":
    main()
