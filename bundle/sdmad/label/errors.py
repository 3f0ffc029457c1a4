"""Errors of the MONAI Label app that a client can act on, each with its HTTP status.

The app and its datastore raise them; `sdmad.label.server` answers them as JSON ``{"detail": <one line>}``. The
message names the study (or tag, file, option) and what to do.
"""

from __future__ import annotations


class RequestError(Exception):
    """A request the server refuses or cannot serve now; ``status_code`` is its HTTP status."""

    status_code = 400
    headers: dict[str, str] = {}


class BadRequest(RequestError):
    """Malformed request: a missing or malformed parameter, an id that is not a plain name."""


class Forbidden(RequestError):
    """A path that would lie outside the studies folder."""

    status_code = 403


class NotFound(RequestError):
    status_code = 404


class NotAllowed(RequestError):
    status_code = 405


class Conflict(RequestError):
    """The request collides with the server's state (an existing study, a training already running)."""

    status_code = 409


class UnsupportedFormat(RequestError):
    status_code = 415


class Invalid(RequestError):
    """Well-formed but unusable content: an unreadable scan, a label naming unknown categories, a bad option."""

    status_code = 422


class ServerError(RequestError):
    """A failure of the server's own: logged with its traceback, answered in one line."""

    status_code = 500


class StillComputing(RequestError):
    """The answer is being computed in the background; the client retries later."""

    status_code = 503
    headers = {"Retry-After": "2"}
