"""Starts the moto server for the tests, with DynamoDB requests applied one at a time.

Real DynamoDB transactions are serializable. moto's are not under concurrency: a transaction
snapshots the whole table when it starts and, if it is cancelled, puts the snapshot back, wiping
whatever other requests wrote in between (moto/dynamodb/models/__init__.py,
transact_write_items). Serialising DynamoDB requests restores the guarantee the real service
gives; SQS requests (long polls among them) still run concurrently.

A table's stream is part of that snapshot. moto deep-copies every stream record with it, which
makes each transaction slower the longer the stream grows; the records never change once
written, so the snapshot here keeps its own list of the same records (what a cancelled
transaction streamed still disappears with it). Stream reads are serialised with the table's
requests too, so that no reader sees the records of a transaction that is then cancelled.

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

try:
    from moto.dynamodb.models.table import StreamShard
except ImportError:  # another moto layout: deep copies, slower but the same answers
    StreamShard = None


def _snapshot(self, memo):
    copy = StreamShard.__new__(StreamShard)
    copy.__dict__.update(self.__dict__)
    copy.table = memo.get(id(self.table), self.table)
    copy.items = list(self.items)
    return copy


if StreamShard is not None:
    StreamShard.__deepcopy__ = _snapshot

app = DomainDispatcherApplication(create_backend_app)
dynamodb = threading.Lock()


def serialised(environ, start_response):
    # DynamoDB_20120810.* and DynamoDBStreams_20120810.*
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
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
