"""A local S3 endpoint for developing against tsdb-lake by hand (the same moto server the tests use).

    python infra/s3_server.py --port 9000 --bucket lake

Starts moto's S3 server on 127.0.0.1:<port> (0 picks a free port), creates the bucket(s), prints the
``storage_options`` to pass to ``tsdb_lake.connect`` and serves until Ctrl-C. Data lives in memory only.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Any

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


def main(argv: list[str] | None = None) -> int:
    """Run the server until interrupted; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="port to bind; 0 picks a free one")
    parser.add_argument("--bucket", action="append", default=None, help="bucket to create (repeatable)")
    parser.add_argument("--prefix", default="lake", help="lake prefix inside the bucket for the printed URI")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    try:
        import boto3  # type: ignore[import-untyped]
        from moto.server import ThreadedMotoServer
    except ImportError:
        print("needs the dev extras: pip install 'moto[server]' boto3", file=sys.stderr)
        return 2

    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=args.verbose)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
    )
    buckets = args.bucket or ["lake"]
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)

    options: dict[str, Any] = {
        "endpoint_url": endpoint,
        "key": ACCESS_KEY,
        "secret": SECRET_KEY,
        "region": REGION,
    }
    uri = f"s3://{buckets[0]}/{args.prefix}".rstrip("/")
    print(f"moto S3 server on {endpoint} (in memory; Ctrl-C to stop); buckets: {', '.join(buckets)}")
    print()
    print("import tsdb_lake")
    print(f"lake = tsdb_lake.connect({uri!r}, storage_options={json.dumps(options)})")
    print()
    print("or, for other tools:")
    print(f"export AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID={ACCESS_KEY} ", end="")
    print(f"AWS_SECRET_ACCESS_KEY={SECRET_KEY} AWS_DEFAULT_REGION={REGION}")
    sys.stdout.flush()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
