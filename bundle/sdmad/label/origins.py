"""Which hosts and web pages may use the API.

MONAI Label's web app allows every origin with credentials (CORS `*`). SD-MAD's server adds no CORS headers
unless `--conf cors_origins` lists origins, and this middleware refuses, with a 403 JSON answer:

- a `Host` header that is not an allowed host name (default: the loopback names), which stops a page of another
  site whose name was made to resolve to 127.0.0.1 (DNS rebinding) and so reaches the server as "same origin";
- an `Origin` header that is neither the server's own nor listed: without CORS a browser still sends a page's
  simple requests (a form POST that starts a training) and only hides the answer, so they are refused here.

Clients that are not browsers (3D Slicer, curl, scripts) send no `Origin` and are not affected. Starlette's
TrustedHostMiddleware would answer the host check in plain text, hence this one.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def names(value: object) -> list[str]:
    """A `--conf` value as a list of names: a JSON list (already parsed) or a comma-separated string."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


class RequestOriginGuard:
    """ASGI middleware: 403 JSON for a disallowed `Host` or `Origin` (see the module docstring).

    Args:
        app: the wrapped application.
        allowed_hosts: host names (no port) a request may address; `*` allows any.
        allowed_origins: origins (`scheme://host[:port]`) of pages allowed besides the server's own.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: list[str], allowed_origins: list[str]):
        self.app, self.hosts, self.origins = app, set(allowed_hosts), set(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.refusal(Headers(scope=scope))
            if refusal is not None:
                await JSONResponse({"detail": refusal}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, headers: Headers) -> str | None:
        host = headers.get("host", "")
        if "*" not in self.hosts and urlsplit(f"//{host}").hostname not in self.hosts:
            return (
                f"host {host!r} is not served (allowed: {sorted(self.hosts)}); behind a proxy, list its name "
                f"with --conf allowed_hosts"
            )
        origin = headers.get("origin")
        if origin is not None and origin not in self.origins and urlsplit(origin).netloc != host:
            return (
                f"requests from web pages of {origin!r} are refused; allow a viewer's origin with --conf cors_origins"
            )
        return None
