#!/usr/bin/env python3
"""A small HTTP/1.1 test server for concur.fetch, on 127.0.0.1 only.

Started by spec/helpers/httpserver.lua. With --tls it speaks HTTPS with a
self-signed certificate made at start. Binds port 0 (the kernel picks a free
port), prints "PORT <n> PID <pid>" on stdout, and serves until killed, until
GET /_shutdown, or until its parent process goes away. Every request is
logged with the server's monotonic clock, so specs measure rates from what
the server saw, never by sleeping.

Endpoints (query parameters in brackets):
  /bytes/N            N bytes of 'x' [chunked=1: no Content-Length]
  /delay/S            answers after S seconds
  /status/C           status C [retry_after=V: Retry-After header V]
  /flaky/KEY          [fail=N status=C retry_after=V drop=1] the first N
                      requests for KEY fail (status C or a dropped
                      connection), later ones get 200 "ok"
  /drop               closes the connection without an answer
  /redirect/N         302 to /redirect/N-1 ... /redirect/0 answers 200
  /loop               302 to itself
  /goto               [url=U code=C] redirect to U
  /slow               an endless body, one byte every 50 ms
  /gzip /deflate      a compressed body of 'hello ' * 100
  /br                 a brotli body ("hello brotli")
  /echo               the method, headers and body as text
  /headers            [any name=value] echoes them as response headers;
                      always sets X-Dup twice
  /text               [s=S] S as text/plain
  /s/...              a site set by POST /_site: a JSON object mapping each
                      path (query included) to {"status", "headers" (a list
                      of [name, value]), "body"}; 404 for other paths
  /cal/N              a calendar page linking to /cal/N+1, for ever
  /gen/T/D/N          page N of a generated site of T pages (answered after
                      D ms): links to its children 5N+1..5N+5 (up to T), its
                      parent, and itself spelt "./N"
  /robots.txt         what POST /_robots last set (404 when none); a body
                      "STATUS C" answers status C, "REDIRECT U" redirects
                      to U, "HANG" never answers
  /_robots            POST: sets robots.txt (empty body: 404 again)
  /_site              POST: sets the /s/ site (JSON, see /s/)
  /_log               the log: one "t path" line per request (t: seconds)
  /_reset             clears the log and the flaky counters
  /_shutdown          stops the server
"""
import gzip
import json
import os
import socket
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()
LOG = []
FLAKY = {}
STATE = {"robots": None, "site": {}}

# "hello brotli" as a brotli stream: one uncompressed meta-block then an
# empty last meta-block (hand-made: no brotli encoder here).
def brotli_stored(data):
    # WBITS=16 ("0"), then a meta-block header: ISLAST=0, MNIBBLES=4 ("00"),
    # MLEN-1 in 16 bits, ISUNCOMPRESSED=1; pad to a byte; the bytes; then
    # ISLAST=1, ISLASTEMPTY=1.
    bits = []
    def put(v, n):
        for i in range(n):
            bits.append((v >> i) & 1)
    put(0, 1)            # WBITS = 16
    put(0, 1)            # ISLAST = 0
    put(0, 2)            # MNIBBLES = 4
    put(len(data) - 1, 16)
    put(1, 1)            # ISUNCOMPRESSED
    while len(bits) % 8:
        bits.append(0)
    out = bytearray()
    for i in range(0, len(bits), 8):
        out.append(sum(b << j for j, b in enumerate(bits[i:i + 8])))
    out += data
    out.append(0b11)     # ISLAST = 1, ISLASTEMPTY = 1
    return bytes(out)

BROTLI = brotli_stored(b"hello brotli")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def send(self, code, body=b"", headers=(), length=True):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        now = time.monotonic()
        u = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        parts = u.path.strip("/").split("/")
        with LOCK:
            if not u.path.startswith("/_"):
                LOG.append("%.6f %s %s" % (now, self.command, self.path))
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        head = parts[0]
        if head == "bytes":
            size = int(parts[1])
            data = b"x" * size
            if q.get("chunked"):
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                step = 16384
                for i in range(0, size, step):
                    c = data[i:i + step]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send(200, data)
        elif head == "delay":
            time.sleep(float(parts[1]))
            self.send(200, b"late")
        elif head == "status":
            hs = []
            if "retry_after" in q:
                hs.append(("Retry-After", q["retry_after"]))
            self.send(int(parts[1]), b"status %s" % parts[1].encode(), hs)
        elif head == "flaky":
            key = parts[1]
            with LOCK:
                seen = FLAKY.get(key, 0)
                FLAKY[key] = seen + 1
            if seen < int(q.get("fail", "1")):
                if q.get("drop"):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                hs = []
                if "retry_after" in q:
                    hs.append(("Retry-After", q["retry_after"]))
                self.send(int(q.get("status", "503")), b"try again", hs)
            else:
                self.send(200, b"ok")
        elif head == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif head == "redirect":
            n = int(parts[1])
            if n > 0:
                self.send(302, b"", [("Location", "/redirect/%d" % (n - 1))])
            else:
                self.send(200, b"arrived")
        elif head == "loop":
            self.send(302, b"", [("Location", "/loop")])
        elif head == "goto":
            self.send(int(q.get("code", "302")), b"",
                      [("Location", q["url"])])
        elif head == "slow":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"1\r\nx\r\n")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                self.close_connection = True
        elif head == "gzip":
            self.send(200, gzip.compress(b"hello " * 100),
                      [("Content-Encoding", "gzip")])
        elif head == "deflate":
            self.send(200, zlib.compress(b"hello " * 100),
                      [("Content-Encoding", "deflate")])
        elif head == "br":
            self.send(200, BROTLI, [("Content-Encoding", "br")])
        elif head == "echo":
            lines = ["method %s" % self.command, "path %s" % self.path]
            for k, v in self.headers.items():
                lines.append("header %s: %s" % (k.lower(), v))
            out = ("\n".join(lines) + "\nbody ").encode() + body
            self.send(200, out, [("Content-Type", "text/plain")])
        elif head == "headers":
            hs = [(k, v) for k, v in q.items()]
            hs += [("X-Dup", "one"), ("X-Dup", "two")]
            self.send(200, b"headers", hs)
        elif head == "robots.txt":
            r = STATE["robots"]
            if r is None:
                self.send(404, b"no robots")
            elif r.startswith(b"STATUS "):
                self.send(int(r[7:10]), b"robots status")
            elif r.startswith(b"REDIRECT "):
                self.send(302, b"", [("Location", r[9:].decode().strip())])
            elif r.strip() == b"HANG":
                time.sleep(3600)
            else:
                self.send(200, r, [("Content-Type", "text/plain")])
        elif head == "s":
            page = STATE["site"].get(self.path)
            if page is None:
                self.send(404, b"no such page")
            else:
                self.send(page.get("status", 200), page.get("body", "").encode(),
                          [tuple(h) for h in page.get("headers", [])])
        elif head == "cal":
            n = int(parts[1])
            body = ('<html><head><title>month %d</title></head><body>'
                    '<a href="/cal/%d">next month</a></body></html>' % (n, n + 1))
            self.send(200, body.encode(), [("Content-Type", "text/html")])
        elif head == "gen":
            total, delay, n = int(parts[1]), int(parts[2]), int(parts[3])
            if delay:
                time.sleep(delay / 1000.0)
            links = ['<a href="%d">child</a>' % c
                     for c in range(5 * n + 1, min(5 * n + 5, total - 1) + 1)]
            links.append('<a href="%d">parent</a>' % max(0, (n - 1) // 5))
            links.append('<a href="./%d">self</a>' % n)
            body = ("<html><head><title>gen %d</title></head><body><p>page %d</p>%s"
                    "</body></html>" % (n, n, "".join(links)))
            self.send(200, body.encode(), [("Content-Type", "text/html")])
        elif head == "_site":
            STATE["site"] = json.loads(body or b"{}")
            self.send(200, b"set")
        elif head == "text":
            self.send(200, q.get("s", "").encode(),
                      [("Content-Type", "text/plain")])
        elif head == "_robots":
            STATE["robots"] = body or None
            self.send(200, b"set")
        elif head == "_log":
            with LOCK:
                out = ("\n".join(LOG) + "\n").encode() if LOG else b""
            self.send(200, out, [("Content-Type", "text/plain")])
        elif head == "_reset":
            with LOCK:
                LOG.clear()
                FLAKY.clear()
            self.send(200, b"reset")
        elif head == "_shutdown":
            self.send(200, b"bye")
            threading.Thread(target=self.server.shutdown).start()
        else:
            self.send(404, b"not found")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        pass   # clients that hang up (max_body, cancel, close) are expected


def watch_parent(server, ppid):
    while True:
        time.sleep(0.5)
        if os.getppid() != ppid:
            os._exit(0)


def self_signed(tmp):
    """A throw-away certificate for 127.0.0.1 (openssl command line)."""
    import subprocess
    key, crt = os.path.join(tmp, "key.pem"), os.path.join(tmp, "crt.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "1",
                    "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return crt, key


def main():
    server = Server(("127.0.0.1", 0), Handler)
    if "--tls" in sys.argv:
        import ssl
        import tempfile
        tmp = tempfile.mkdtemp(prefix="concur-tls-")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self_signed(tmp))
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("PORT %d PID %d" % (server.server_address[1], os.getpid()),
          flush=True)
    threading.Thread(target=watch_parent, args=(server, os.getppid()),
                     daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
