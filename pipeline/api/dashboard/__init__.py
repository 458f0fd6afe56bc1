"""The operator dashboard: a page of the API at ``/dashboard`` (plain JS, no build step).

The page and its assets are open (they hold no data, like ``/api/openapi.json``); every
number and message on it comes from the ``/api`` routes, which the page calls with the token
the operator typed into its login form (kept in the browser's localStorage). The charts are
drawn by uPlot, fetched with npm into ``node_modules`` (``make dashboard``, which ``make dev``
and ``make test`` run; not committed): ``package.json`` pins the version and
``package-lock.json`` its integrity hash. Nothing is loaded from anywhere but the API, and
the page's Content-Security-Policy says so.

Every file is a fixed route (no path parameter: nothing else on disk can be asked for).
Without the uPlot bundle the page and the vendor routes answer 503 ``dashboard_unavailable``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response

__all__ = [
    "CSP",
    "DASHBOARD_DIR",
    "DASHBOARD_PATHS",
    "UPLOT_DIR",
    "UPLOT_VERSION",
    "bundle_missing",
    "install_dashboard",
]

UPLOT_VERSION = "1.6.32"
"""The pinned ``uplot`` version (keep in step with ``package.json``)."""

DASHBOARD_DIR = Path(__file__).resolve().parent
STATIC_DIR = DASHBOARD_DIR / "static"
#: Where npm puts uPlot's files (looked up at each request: ``make dashboard`` needs no restart).
UPLOT_DIR = DASHBOARD_DIR / "node_modules" / "uplot" / "dist"

_JS = "text/javascript; charset=utf-8"
_CSS = "text/css; charset=utf-8"
#: path -> (from uPlot's bundle?, file name, media type).
_FILES: dict[str, tuple[bool, str, str]] = {
    "/dashboard": (False, "index.html", "text/html; charset=utf-8"),
    "/dashboard/app.js": (False, "app.js", _JS),
    "/dashboard/style.css": (False, "style.css", _CSS),
    "/dashboard/favicon.svg": (False, "favicon.svg", "image/svg+xml"),
    "/dashboard/vendor/uPlot.iife.min.js": (True, "uPlot.iife.min.js", _JS),
    "/dashboard/vendor/uPlot.min.css": (True, "uPlot.min.css", _CSS),
}

#: The dashboard's routes: open, as they serve only these files (the data is behind the token).
DASHBOARD_PATHS = frozenset(_FILES)

#: Scripts, styles and requests from the API itself only; the QR image is a blob: URL made
#: from an authorized fetch. No inline script or style, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def bundle_missing() -> Path | None:
    """The first uPlot file npm has not fetched, or None when all are there."""
    for vendor, name, _ in _FILES.values():
        if vendor and not (UPLOT_DIR / name).is_file():
            return UPLOT_DIR / name
    return None


def _unavailable(missing: Path) -> JSONResponse:
    return JSONResponse(
        {
            "code": "dashboard_unavailable",
            "message": f"the dashboard's chart library is missing ({missing}); "
            "run `make dashboard` (npm install in pipeline/api/dashboard)",
        },
        status_code=503,
        headers={"Retry-After": "60", "Cache-Control": "no-store"},
    )


def _serve(path: str) -> Callable[[], Awaitable[Response]]:
    vendor, name, media_type = _FILES[path]
    # The page and uPlot's files need the bundle; app.js and style.css are ours.
    needs_bundle = vendor or path == "/dashboard"

    async def endpoint() -> Response:
        if needs_bundle:
            missing = bundle_missing()
            if missing is not None:
                return _unavailable(missing)
        folder = UPLOT_DIR if vendor else STATIC_DIR
        return FileResponse(folder / name, media_type=media_type, headers=_HEADERS)

    return endpoint


def install_dashboard(app: FastAPI) -> None:
    """Add the dashboard's routes to ``app`` (open; out of the OpenAPI document).
    ``/dashboard/`` is redirected to ``/dashboard`` by the router."""
    for path in _FILES:
        app.add_api_route(
            path,
            _serve(path),
            methods=["GET"],
            include_in_schema=False,
            response_class=Response,
        )
