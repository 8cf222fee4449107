"""`/docs`: Swagger UI over `/openapi.json`, its script and style served from the package (`static/swagger-ui/`,
vendored from npm's swagger-ui-dist), so the page works on a host without internet access. Nothing on the page
points at another host: no CDN, no favicon from elsewhere, and Swagger UI's online validator badge is off.
(FastAPI's `/redoc` is not served: ReDoc loads from a CDN too.)"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

SWAGGER_UI_VERSION = "5.35.0"
STATIC_DIR = Path(__file__).parent / "static" / "swagger-ui"
STATIC_PATH = "/docs/static"


def install_docs(app: FastAPI) -> None:
    openapi_url = app.openapi_url or "/openapi.json"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} API",
            swagger_js_url=f"{root}{STATIC_PATH}/swagger-ui-bundle.js?v={SWAGGER_UI_VERSION}",
            swagger_css_url=f"{root}{STATIC_PATH}/swagger-ui.css?v={SWAGGER_UI_VERSION}",
            swagger_favicon_url=f"{root}{STATIC_PATH}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="swagger-ui")
