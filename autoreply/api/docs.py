"""The API's documentation pages, served offline: Swagger UI at ``/docs`` and ReDoc at
``/redoc`` with their scripts and styles from the ``fastapi-offline`` package's files (served
under ``/docs/static/``), never from a CDN, so the pages work on a machine without internet.

``install_docs(app)`` adds the routes; the app is made with ``docs_url=None`` and
``redoc_url=None`` so FastAPI's CDN-backed pages are not registered as well. The pages are
sent with a Content-Security-Policy that keeps every request on this server.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import FastAPI, Response
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse

STATIC_PREFIX = "/docs/static"
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' blob:; worker-src 'self' blob:; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'self'; base-uri 'none'"
)
"""The pages' own inline start-up scripts run; nothing loads from another host (ReDoc's
footer logo would come from its CDN otherwise)."""
FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
"""The only files served: nothing else of the package folder is reachable."""


def static_folder() -> Path:
    """The folder of the swagger-ui and redoc files that ``fastapi-offline`` ships."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs``, ``/docs/oauth2-redirect``, ``/redoc`` and their static files."""
    folder = static_folder()
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_url = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return _local(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{STATIC_PREFIX}/swagger-ui-bundle.js",
                swagger_css_url=f"{STATIC_PREFIX}/swagger-ui.css",
                swagger_favicon_url=f"{STATIC_PREFIX}/favicon.png",
                oauth2_redirect_url=oauth2_url,
            )
        )

    @app.get(oauth2_url, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return _local(
            get_redoc_html(
                openapi_url=openapi_url,
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{STATIC_PREFIX}/redoc.standalone.js",
                redoc_favicon_url=f"{STATIC_PREFIX}/favicon.png",
                with_google_fonts=False,
            )
        )

    @app.get(STATIC_PREFIX + "/{name}", include_in_schema=False)
    def docs_static(name: str) -> Response:
        if name not in FILES or not (folder / name).is_file():
            return Response("not found", status_code=404, media_type="text/plain")
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return FileResponse(
            folder / name, media_type=media, headers={"Cache-Control": "max-age=86400"}
        )


def _local(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = CSP
    return response
