"""Starts the moto server for the tests, with DynamoDB requests applied one at a time.

Real DynamoDB transactions are serializable. moto's are not under concurrency: a transaction
snapshots the whole table when it starts and, if it is cancelled, puts the snapshot back, wiping
whatever other requests wrote in between (moto/dynamodb/models/__init__.py,
transact_write_items). Serialising DynamoDB requests restores the guarantee the real service
gives; SQS requests (long polls among them) still run concurrently.

Usage: python infra/moto_server.py PORT
"""

import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

app = DomainDispatcherApplication(create_backend_app)
dynamodb = threading.Lock()


def serialised(environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        with dynamodb:
            # Produce the whole body while holding the lock.
            return list(app(environ, start_response))
    return app(environ, start_response)


if __name__ == "__main__":
    run_simple(
        "127.0.0.1",
        int(sys.argv[1]),
        serialised,
        threaded=True,
        request_handler=MotoRequestHandler,
    )
