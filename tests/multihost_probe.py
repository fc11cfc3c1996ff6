"""Run on a namespace host by tests/test_multihost.py: look at the servers over the test's network.

    python multihost_probe.py wait REDIS_HOST:PORT S3_URL   # until both answer (exit 1 after 60 s)
    python multihost_probe.py mkbucket NAME                 # create a bucket at AWS_ENDPOINT_URL
    python multihost_probe.py objects NAME                  # JSON {key: body} of every object

S3 calls use the AWS_* variables of the environment, as the workers do.
"""
from __future__ import annotations

import json
import socket
import sys
import time
import urllib.request


def _client():
    import boto3

    return boto3.client("s3")


def wait(redis_addr: str, s3_url: str, timeout: float = 60) -> int:
    host, port = redis_addr.rsplit(":", 1)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    urllib.request.urlopen(s3_url, timeout=2).read()
                    return 0
        except OSError:
            pass
        time.sleep(0.1)
    print(f"{redis_addr} or {s3_url} did not answer in {timeout} s", file=sys.stderr)
    return 1


def objects(bucket: str) -> dict[str, str]:
    client = _client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read().decode(errors="replace") for k in keys}


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "wait":
        return wait(*args)
    if command == "mkbucket":
        _client().create_bucket(Bucket=args[0])
        return 0
    if command == "objects":
        print(json.dumps(objects(args[0])))
        return 0
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
