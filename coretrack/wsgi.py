"""The entry point for mod_wsgi: ``application``.

Importing this module reads no configuration and opens nothing.  The application is
built on the first request, from the process environment plus any
``CORETRACK_*`` variables Apache passes with ``SetEnv`` (e.g.
``SetEnv CORETRACK_CONFIG /srv/coretrack/coretrack.conf``).  It is the bare
application: identity comes only from Apache's ``REMOTE_USER``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

# Absolute imports: mod_wsgi may load this file as a script, outside its package.
from coretrack.app import CoreTrack, create_app
from coretrack.config import UMASK, Config

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

_app: CoreTrack | None = None
_lock = threading.Lock()


def _build(environ: WSGIEnvironment) -> CoreTrack:
    # Attachments, spool files and database journals made by this process stay private, whatever
    # umask Apache started with (WSGIDaemonProcess could set it, mod_wsgi-express cannot).
    os.umask(UMASK)

    settings = dict(os.environ)
    settings.update(
        {key: value for key, value in environ.items() if key.startswith("CORETRACK_") and isinstance(value, str)}
    )
    return create_app(Config.from_env(settings))


def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    global _app
    if _app is None:
        with _lock:
            if _app is None:
                _app = _build(environ)
    response: Iterable[bytes] = _app(environ, start_response)
    return response
