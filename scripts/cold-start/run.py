"""Cold starts of the Lambda bootstraps against a local Lambda Runtime API (served here) with
moto as AWS; driven by scripts/bench-cold-start, which builds the bootstraps and starts moto.

For each bootstrap, RUNS times: start the process as Lambda would (the runtime's variables,
the function's own as template.yaml sets them), time exec -> first GET /next (init), hand it
one realistic event, time the answer (first response), then stop the process. Prints medians
per function, the median of each init phase the bootstrap logs at debug level, and the zipped
size of each bootstrap.

  python run.py --endpoint URL --runs N NAME=PATH [NAME=PATH ...]

NAME is ingest, worker, cio-sync or empty (the empty lambda_http handler, given the ingest
event).
"""

import argparse
import asyncio
import hashlib
import hmac
import http.server
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile

import boto3

TABLE = "cold-start-events"
QUEUE = "cold-start-jobs"
SEGMENT_SECRET = "cold-start-segment-secret-0123456789"
RUNTIME = "/2018-06-01/runtime"


class Invocation:
    """One process's first invocation, as the Runtime API sees it."""

    def __init__(self, event):
        self.event = event
        self.request_id = str(uuid.uuid4())
        self.started = None  # exec
        self.first_next = None  # the first GET /next arrived
        self.handed_out = None  # its answer (the event) was written
        self.answered = None  # POST .../response or .../error arrived
        self.outcome = None
        self.body = None
        self.done = threading.Event()
        self.release = threading.Event()  # lets a second /next return (never, until stopped)


class RuntimeApi(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    current = None

    def handle_error(self, request, client_address):
        pass  # a connection of a stopped process, reset


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        inv = self.server.current
        if self.path != f"{RUNTIME}/invocation/next" or inv is None:
            return self.reply(404, b"{}")
        now = time.perf_counter()
        if inv.first_next is not None:
            # The process is ready for a second event; there is none: hold the call.
            inv.release.wait()
            return self.reply(410, b"{}")
        inv.first_next = now
        body = json.dumps(inv.event).encode()
        headers = {
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
            "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:cold-start",
            "Lambda-Runtime-Trace-Id": "Root=1-5e9f0c65-1de4d666d4dd26aced652b6c;Parent=1;Sampled=0",
        }
        self.reply(200, body, headers)
        inv.handed_out = time.perf_counter()

    def do_POST(self):
        inv = self.server.current
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        now = time.perf_counter()
        if inv is not None and self.path.startswith(f"{RUNTIME}/invocation/{inv.request_id}/"):
            inv.answered = now
            inv.outcome = self.path.rsplit("/", 1)[1]
            inv.body = data
            self.reply(202, b"{}")
            inv.done.set()
        elif self.path == f"{RUNTIME}/init/error":
            if inv is not None:
                inv.outcome, inv.body = "init-error", data
                inv.done.set()
            self.reply(202, b"{}")
        else:
            self.reply(404, b"{}")

    def reply(self, status, body, headers=None):
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a process stopped while its held /next was open


def segment_event(message_id):
    return {
        "type": "track",
        "event": "trial_started",
        "messageId": message_id,
        "userId": "usr_" + message_id[-8:],
        "properties": {"plan": "pro", "source": "google"},
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
    }


def ingest_event():
    body = json.dumps(segment_event("cold-" + uuid.uuid4().hex))
    signature = hmac.new(SEGMENT_SECRET.encode(), body.encode(), hashlib.sha1).hexdigest()
    return {
        "version": "2.0",
        "routeKey": "POST /webhooks/{source}",
        "rawPath": "/webhooks/segment",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "content-length": str(len(body)),
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "user-agent": "Segment.io/1.0",
            "x-signature": signature,
            "x-forwarded-for": "54.0.0.1",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": "POST",
                "path": "/webhooks/segment",
                "protocol": "HTTP/1.1",
                "sourceIp": "54.0.0.1",
                "userAgent": "Segment.io/1.0",
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": "POST /webhooks/{source}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": int(time.time() * 1000),
        },
        "pathParameters": {"source": "segment"},
        "body": body,
        "isBase64Encoded": False,
    }


def worker_event():
    event_id = "cold-" + uuid.uuid4().hex
    rule = "segment-trial-started"
    segment = segment_event(event_id)
    message = {
        "v": 1,
        "key": f"segment#{event_id}#{rule}",
        "rule": rule,
        "job": {
            "kind": "event",
            "event": {
                "source": "segment",
                "id": event_id,
                "name": "trial_started",
                "user_id": segment["userId"],
                "fields": {"user_id": segment["userId"], "plan": "pro", "source": "google"},
            },
        },
    }
    body = json.dumps(message)
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": uuid.uuid4().hex,
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": str(int(time.time() * 1000)),
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000)),
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{QUEUE}",
                "awsRegion": "us-east-1",
            }
        ]
    }


def cio_sync_event():
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": "us-east-1",
        "resources": [],
        "detail": {"job": "campaign-strategy"},
    }


class ConnectDelay:
    """An HTTP proxy in front of moto that holds each new connection for `delay_ms` before its
    first request: what opening a connection to an AWS service costs in Lambda (DNS, TCP, a TLS
    handshake's round trips), which moto on loopback does not. Connections stay open between
    requests, as AWS's do (moto closes each after one answer; the proxy opens a new one to moto
    per request and keeps the client's), so a warmed-up connection saves what it would."""

    def __init__(self, upstream, delay_ms):
        host, port = upstream.rsplit("//", 1)[1].rsplit(":", 1)
        self.upstream, self.delay = (host, int(port)), delay_ms / 1000
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait()

    def _serve(self, ready):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _connection(self, reader, writer):
        await asyncio.sleep(self.delay)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = _content_length(head)
                body = await reader.readexactly(length) if length else b""
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
                up_writer.write(head + body)
                await up_writer.drain()
                # moto says how long its answer is, and closes the connection only a while later.
                answer_head = await up_reader.readuntil(b"\r\n\r\n")
                answer_length = _content_length(answer_head)
                answer_body = await up_reader.readexactly(answer_length) if answer_length else await up_reader.read()
                up_writer.close()
                writer.write(_kept_alive(answer_head + answer_body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            writer.close()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"


def _content_length(head):
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _kept_alive(answer):
    """`answer` without its `Connection: close`, with the length of the body it carries."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = [l for l in head.split(b"\r\n") if l.split(b":")[0].strip().lower() not in (b"connection", b"content-length")]
    lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


EVENTS = {"ingest": ingest_event, "worker": worker_event, "cio-sync": cio_sync_event, "empty": ingest_event}


def create_resources(endpoint):
    """The table, queue and secrets, as template.yaml shapes them."""
    dynamo = boto3.client("dynamodb", endpoint_url=endpoint)
    if TABLE not in dynamo.list_tables()["TableNames"]:
        dynamo.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    queue_url = boto3.client("sqs", endpoint_url=endpoint).create_queue(QueueName=QUEUE)["QueueUrl"]
    secrets = boto3.client("secretsmanager", endpoint_url=endpoint)

    def secret(name, value):
        try:
            return secrets.create_secret(Name=name, SecretString=json.dumps(value))["ARN"]
        except secrets.exceptions.ResourceExistsException:
            return secrets.put_secret_value(SecretId=name, SecretString=json.dumps(value))["ARN"]

    signing = secret("cold-start-signing", {"SEGMENT_SHARED_SECRET": SEGMENT_SECRET, "CIO_WEBHOOK_SECRET": SEGMENT_SECRET})
    api_keys = secret("cold-start-api-keys", {"MAVERA_API_KEY": "mvra_cold_start", "CIO_APP_KEY": "cio_cold_start"})
    return queue_url, signing, api_keys


def function_env(name, endpoint, queue_url, signing, api_keys):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # What the Lambda runtime sets (and AWS_LAMBDA_RUNTIME_API, per run).
        "AWS_LAMBDA_FUNCTION_NAME": f"mavera-relay-{name}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/mavera-relay-{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]cold",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        # INFO, as deployed, plus the init phases' debug lines.
        "AWS_LAMBDA_LOG_LEVEL": "info,shared::startup=debug",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_SESSION_TOKEN": "test",
        "AWS_EC2_METADATA_DISABLED": "true",
        # moto instead of AWS.
        "AWS_ENDPOINT_URL": endpoint,
    }
    # The function's own, as template.yaml sets them.
    if name in ("ingest", "empty"):
        env.update(EVENTS_TABLE=TABLE, JOBS_QUEUE_URL=queue_url, SECRETS_ARN=signing,
                   SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE="false", CIO_TIMESTAMP_TOLERANCE_SECS="300")
    elif name == "worker":
        env.update(EVENTS_TABLE=TABLE, SECRETS_ARN=api_keys, MAVERA_BASE_URL="http://127.0.0.1:9/api/v1",
                   DRY_RUN="true", MAVE_CONCURRENCY="5", CIO_REGION="us", FUNCTION_TIMEOUT_SECS="60")
    elif name == "cio-sync":
        env.update(EVENTS_TABLE=TABLE, JOBS_QUEUE_URL=queue_url, SECRETS_ARN=api_keys, CIO_REGION="us",
                   FUNCTION_TIMEOUT_SECS="600")
    return env


def phases(log):
    """The init phases a run logged: {phase: ms}."""
    out = {}
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") == "init phase" and "phase" in record:
            out[record["phase"]] = float(record["ms"])
    return out


def run_once(name, path, env):
    # A Runtime API of its own per process: a request the previous process sent just before
    # it was stopped can then never take this one's event.
    server = RuntimeApi(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}")
    inv = Invocation(EVENTS[name]())
    server.current = inv
    with tempfile.TemporaryFile() as log:
        inv.started = time.perf_counter()
        process = subprocess.Popen([path], env=env, stdout=log, stderr=subprocess.STDOUT)
        finished = inv.done.wait(30)
        process.kill()
        process.wait()
        inv.release.set()
        server.shutdown()
        server.server_close()
        log.seek(0)
        text = log.read().decode(errors="replace")
    if not finished or inv.outcome != "response":
        seen = "the event was handed out" if inv.handed_out else ("GET /next came" if inv.first_next else "no GET /next came")
        sys.exit(f"{name}: no response within 30 s ({seen}; outcome {inv.outcome}: {inv.body!r}; exit {process.returncode})\n{text}")
    return {
        "init_ms": (inv.first_next - inv.started) * 1000,
        "first_response_ms": (inv.answered - inv.handed_out) * 1000,
        "phases": phases(text),
        "response": inv.body.decode(errors="replace"),
    }


def zipped_kib(path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.write(path, "bootstrap")
    return len(buffer.getvalue()) / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--arch", default=os.uname().machine)
    parser.add_argument("--json", help="write every run's figures here")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="one more variable for every function (to try a setting)")
    parser.add_argument("--connect-delay-ms", type=float, default=0,
                        help="hold each new connection to AWS this long, as a TLS handshake would")
    parser.add_argument("bootstraps", nargs="+")
    args = parser.parse_args()

    queue_url, signing, api_keys = create_resources(args.endpoint)
    endpoint = ConnectDelay(args.endpoint, args.connect_delay_ms).endpoint if args.connect_delay_ms else args.endpoint
    results = {}
    for spec in args.bootstraps:
        name, path = spec.split("=", 1)
        env = function_env(name, endpoint, queue_url, signing, api_keys)
        env.update(kv.split("=", 1) for kv in args.env)
        run_once(name, path, env)  # once unmeasured: the binary into the page cache
        runs = [run_once(name, path, env) for _ in range(args.runs)]
        results[name] = {"path": path, "runs": runs, "zipped_kib": zipped_kib(path), "bytes": os.path.getsize(path)}

    delay = f", each new connection to AWS held {args.connect_delay_ms:g} ms" if args.connect_delay_ms else ""
    print(f"cold starts: {args.runs} runs each, {args.arch}, Runtime API served by this script, moto at {args.endpoint}{delay}")
    print(f"{'function':<10} {'init (exec -> /next)':>21} {'first response':>15} {'binary':>10} {'zipped':>10}")
    empty = results.get("empty")
    empty_init = statistics.median(r["init_ms"] for r in empty["runs"]) if empty else None
    for name, result in results.items():
        init = statistics.median(r["init_ms"] for r in result["runs"])
        first = statistics.median(r["first_response_ms"] for r in result["runs"])
        ratio = f" ({init / empty_init:.1f}x)" if empty_init and name != "empty" else ""
        print(f"{name:<10} {init:>9.2f} ms{ratio:<9} {first:>12.2f} ms {result['bytes'] / 1048576:>7.1f} MiB {result['zipped_kib'] / 1024:>7.2f} MiB")
    for name, result in results.items():
        names = []
        for r in result["runs"]:
            names += [p for p in r["phases"] if p not in names]
        if names:
            medians = ", ".join(
                f"{p} {statistics.median(r['phases'][p] for r in result['runs'] if p in r['phases']):.2f}" for p in names
            )
            print(f"  {name} init phases (median ms): {medians}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
