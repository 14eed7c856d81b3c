"""Measures each function binary from spawn to its first poll of the Lambda runtime API.

A stub runtime API on 127.0.0.1 records when a process first asks for an invocation
(GET /2018-06-01/runtime/invocation/next); the process is then stopped. Each binary is started
RUNS times with the environment a deployed function has (dummy credentials; nothing is called
at init), and the median is printed. Run after `cargo lambda build --release` (infra/sizes.sh),
(which puts the x86_64 zips in target/lambda/x86_64), or point BIN_DIR at other builds.

Usage: python3 infra/coldstart.py [RUNS]

OMS_COLDSTART_ENDPOINT: what the functions warm their DynamoDB and SQS connections against at
init: a moto server's URL (its answers take part of the figure), or `stub` for an endpoint in
this script that answers DescribeTable and GetQueueUrl at once (the figure is then the binary's
own init). Unset, the functions try AWS itself, which a machine without internet never reaches
(they give up after 2 s).
"""

import http.server
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import zipfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN_DIR = pathlib.Path(os.environ.get("BIN_DIR", ROOT / "target" / "lambda" / "x86_64"))
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 11

first_poll = {}
lock = threading.Lock()


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.endswith("/runtime/invocation/next"):
            with lock:
                first_poll.setdefault("t", time.perf_counter())
        # Hold the poll until the process is stopped.
        time.sleep(5)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, daemon=True).start()
port = server.server_address[1]

env = dict(os.environ)
env.update(
    AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}",
    AWS_LAMBDA_FUNCTION_NAME="coldstart",
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
    AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
    AWS_REGION="us-east-1",
    AWS_ACCESS_KEY_ID="test",
    AWS_SECRET_ACCESS_KEY="test",
    OMS_TABLE="oms",
    OMS_QUEUE_PREFIX="oms-",
    # As the template sets it: queue URLs are built, not looked up.
    OMS_QUEUE_URL_PREFIX="https://sqs.us-east-1.amazonaws.com/000000000000/",
    OMS_CONFIG=str(ROOT / "infra" / "config" / "oms.toml"),
    OMS_NUMBERING_KEY="coldstart",
    OMS_STAFF_TOKEN="coldstart",
    OMS_ALLOW_DEMO="1",  # the shipped configuration still holds the demo's rules
    RUST_LOG="error",
)


class StubAws(http.server.BaseHTTPRequestHandler):
    """Answers the init's warm-up calls (DynamoDB DescribeTable, SQS GetQueueUrl, both in the
    JSON protocol) at once, and anything else with an empty object."""

    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: without this, each answer on a kept-alive
    # connection waits for the client's delayed acknowledgement (about 40 ms).
    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        target = self.headers.get("x-amz-target", "")
        if target.endswith(".DescribeTable"):
            body = '{"Table":{"TableName":"oms","TableStatus":"ACTIVE"}}'
        elif target.endswith(".GetQueueUrl"):
            port = self.server.server_address[1]
            body = '{"QueueUrl":"http://127.0.0.1:%d/000000000000/oms-q"}' % port
        else:
            body = "{}"
        data = body.encode()
        self.send_response(200)
        self.send_header("content-type", "application/x-amz-json-1.0")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


# The functions warm their DynamoDB and SQS connections at init; give them an endpoint to warm.
endpoint = os.environ.get("OMS_COLDSTART_ENDPOINT")
if endpoint == "stub":
    stub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StubAws)
    stub.daemon_threads = True
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{stub.server_address[1]}"
if endpoint:
    env["AWS_ENDPOINT_URL"] = endpoint

print(f"{'function':<20} {'median ms':>10} {'min ms':>8} {'max ms':>8}  ({RUNS} runs)")
def binaries():
    """Each function's bootstrap, unzipped from bootstrap.zip when only the zip was built."""
    unzip_dir = pathlib.Path(tempfile.mkdtemp(prefix="coldstart-"))
    for f in sorted(p.name for p in (ROOT / "functions").iterdir()):
        binary, archive = BIN_DIR / f / "bootstrap", BIN_DIR / f / "bootstrap.zip"
        if not binary.exists() and archive.exists():
            binary = unzip_dir / f / "bootstrap"
            binary.parent.mkdir(parents=True)
            with zipfile.ZipFile(archive) as z:
                binary.write_bytes(z.read("bootstrap"))
            binary.chmod(0o755)
        if binary.exists():
            yield f, binary


for name, binary in binaries():
    times = []
    for _ in range(RUNS):
        first_poll.clear()
        start = time.perf_counter()
        p = subprocess.Popen([str(binary)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while "t" not in first_poll and p.poll() is None and time.perf_counter() - start < 10:
            time.sleep(0.0005)
        p.kill()
        p.wait()
        if "t" in first_poll:
            times.append((first_poll["t"] - start) * 1000)
    if times:
        print(f"{name:<20} {statistics.median(times):>10.1f} {min(times):>8.1f} {max(times):>8.1f}")
    else:
        print(f"{name:<20} {'never polled':>10}")
