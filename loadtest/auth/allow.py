#!/usr/bin/env python3
"""A forward-auth service that allows everything, for loadtest/auth/run.sh.

Usage: allow.py PORT

Answers every GET with 200 and the body {} (no claims to add), and logs nothing, so that a
storm measured against --auth-url costs the gateway its own side of forward auth (one HTTP
request per stream it cannot answer from its cache) and this service as little as a service
can. It ignores the request's headers, Authorization included.
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b"{}"


class Allow(BaseHTTPRequestHandler):
    # Keep-alive, so a gateway that reuses connections does not open one per check.
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format, *args):
        pass


class Server(ThreadingHTTPServer):
    # A storm opens thousands of checks at once: a deep accept queue, and threads that do not
    # keep the process alive.
    request_queue_size = 1024
    daemon_threads = True


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: allow.py PORT")
    Server(("127.0.0.1", int(sys.argv[1])), Allow).serve_forever()


if __name__ == "__main__":
    main()
