"""One install with two real Apache front-ends on one database, for tests that take every hit path:
``logging`` answers the image itself and logs it for 'coretrack ingest', ``application`` hands it to
the application (tracker.py); SendGrid's webhook key is set, and ``post_sendgrid`` signs events with it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from coretrack.delivery_reports import sendgrid
from coretrack.settings import SettingsService

from .apache import ApacheServer
from .postgres import PostgresServer


class Site:
    def __init__(self, logging: ApacheServer, application: ApacheServer, sendgrid_key: ec.EllipticCurvePrivateKey):
        self.logging = logging
        self.application = application
        self.sendgrid_key = sendgrid_key

    def post_sendgrid(self, events: list[dict[str, Any]]) -> None:
        """Posts the events to the webhook as SendGrid signs them; it must store them (204)."""
        body = json.dumps(events).encode()
        stamp = str(int(time.time()))
        signature = self.sendgrid_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        reply = self.logging.request("POST", "/webhooks/sendgrid", body=body, headers={
            "Content-Type": "application/json", sendgrid.TIMESTAMP_HEADER: stamp,
            sendgrid.SIGNATURE_HEADER: base64.b64encode(signature).decode()})
        assert reply.status == 204, reply.body


@contextmanager
def two_front_ends(database: str, settings: dict[str, str] | None = None) -> Iterator[Site]:
    """The install on ``database`` ("sqlite" or "postgresql"), with ``settings`` saved too; all
    stopped on leaving."""
    database_url = None
    if database == "postgresql":
        new_database = PostgresServer.new_database()
        database_url = new_database.__enter__()
    logging = ApacheServer("site", "", database_url=database_url, hit_log=True)
    application = None
    try:
        logging.start()
        application = ApacheServer("site", "", beside=logging).start()
        key = ec.generate_private_key(ec.SECP256R1())
        der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        with logging.session() as session:
            SettingsService(session, logging.config).update(
                {"sendgrid_webhook_key": base64.b64encode(der).decode(), **(settings or {})}, user_name="admin")
        yield Site(logging, application, key)
    finally:
        if application is not None:
            application.stop()
        logging.stop()
        if database_url is not None:
            new_database.__exit__(None, None, None)
