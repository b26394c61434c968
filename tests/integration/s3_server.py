#!/usr/bin/env python3
"""An S3-compatible server on loopback for the export tests (moto), and a way to read it back.

    python3 s3_server.py serve --bucket NAME
        creates the bucket, prints the port it listens on (127.0.0.1) as its first line of
        output, then serves until it is killed;
    python3 s3_server.py fetch --endpoint URL --bucket NAME --dir DIR
        downloads every object of the bucket into DIR, keys as relative paths.
"""

import argparse
import logging
import os
import sys
import time

import boto3

CREDENTIALS = {
    "aws_access_key_id": "rosterflow-test",
    "aws_secret_access_key": "rosterflow-test-secret",
    "region_name": "us-east-1",
}


def client(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS)


def serve(bucket):
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    client(f"http://127.0.0.1:{port}").create_bucket(Bucket=bucket)
    print(port, flush=True)
    # The reader of the port goes away: nothing else may be written to the pipe.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    while True:
        time.sleep(3600)


def fetch(endpoint, bucket, directory):
    s3 = client(endpoint)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            path = os.path.join(directory, item["Key"])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            s3.download_file(bucket, item["Key"], path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["serve", "fetch"])
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--endpoint")
    parser.add_argument("--dir")
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.bucket)
    elif not (args.endpoint and args.dir):
        sys.exit("fetch needs --endpoint and --dir")
    else:
        fetch(args.endpoint, args.bucket, args.dir)


if __name__ == "__main__":
    main()
