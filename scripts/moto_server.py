"""Starts moto's server (the local AWS endpoint for tests and local runs) with DynamoDB
writes serialized.

Real DynamoDB applies each conditional write atomically: of twenty concurrent
`attribute_not_exists` puts on one key, exactly one succeeds. moto's server is threaded and
its DynamoDB backend checks the condition and applies the write without a lock, so two
requests can both pass the check. That is a gap in the stand-in, not a behaviour to test
against; a lock around the item operations restores the guarantee mavera-relay relies on.

Usage is that of `moto_server`: python scripts/moto_server.py -H 127.0.0.1 -p 4566
"""

import functools
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

_lock = threading.RLock()


def _serialized(operation):
    @functools.wraps(operation)
    def locked(*args, **kwargs):
        with _lock:
            return operation(*args, **kwargs)

    return locked


for _name in ("put_item", "get_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"):
    setattr(DynamoDBBackend, _name, _serialized(getattr(DynamoDBBackend, _name)))

if __name__ == "__main__":
    sys.exit(main())
