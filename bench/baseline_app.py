"""The benchmark's baseline: the cheapest FastAPI route that answers like a FHIR read.

It returns fixed, pre-serialised bytes (a Patient as the real server would send it) so that the
ratio real/baseline measures what the FHIR read path costs on top of FastAPI + uvicorn on the same
machine in the same run. Started by crud_bench.py as
`uvicorn --factory baseline_app:app_from_env --app-dir bench`, with the body's path in
BENCH_BASELINE_BODY_FILE.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, Response

BODY_FILE_ENV = "BENCH_BASELINE_BODY_FILE"
FHIR_JSON = "application/fhir+json"


def create_app(body: bytes) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/baseline")
    async def baseline() -> Response:
        return Response(content=body, media_type=FHIR_JSON)

    return app


def app_from_env() -> FastAPI:
    return create_app(Path(os.environ[BODY_FILE_ENV]).read_bytes())
