"""A local stand-in for Google Cloud Storage that TensorFlow's own `gs://` file system talks to.

TF 2.21's GCS client has its endpoints compiled in (https://www.googleapis.com/storage/v1/,
https://storage.googleapis.com/), but its libcurl honours HTTPS_PROXY and CURL_CA_BUNDLE, and
GOOGLE_AUTH_TOKEN_FOR_TESTING (with NO_GCE_CHECK) skips Google auth. So this module runs, in
the test's process, an HTTP proxy that accepts CONNECT to those two hosts, terminates TLS with
a certificate made for them by `openssl` (trusted through CURL_CA_BUNDLE), and answers the
subset of the JSON API that tf.io.gfile and tf.train.Checkpoint use: object metadata, ranged
reads, resumable and simple uploads, listing with prefix/delimiter, delete and rewrite (copy).
Objects live in a dict, so a zoo-train process can be SIGKILLed and another one resumes from
what the "bucket" holds; nothing leaves the machine.

    with GcsStandin(tmp_path) as gcs:
        env = {**os.environ, **gcs.env()}          # for the subprocess that uses gs://
        ... gcs.objects("bucket") ...
"""

import datetime
import http.server
import json
import os
import re
import socketserver
import ssl
import subprocess
import threading
import urllib.parse

HOSTS = ("www.googleapis.com", "storage.googleapis.com")


def make_certificate(directory) -> tuple:
    """(cert.pem, key.pem): a self-signed certificate for HOSTS (needs the openssl command)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", key, "-out", cert, "-subj", f"/CN={HOSTS[0]}",
                    "-addext", "subjectAltName=" + ",".join(f"DNS:{h}" for h in HOSTS),
                    "-addext", "basicConstraints=critical,CA:TRUE"],
                   check=True, capture_output=True)
    return cert, key


class _Store:
    def __init__(self):
        self.lock = threading.Lock()
        self.objects = {}      # (bucket, name) -> bytes
        self.generation = {}   # (bucket, name) -> int
        self.uploads = {}      # upload id -> (bucket, name)
        self.counter = 0

    def put(self, bucket, name, data):
        with self.lock:
            self.counter += 1
            self.objects[(bucket, name)] = bytes(data)
            self.generation[(bucket, name)] = self.counter

    def meta(self, bucket, name):
        data = self.objects[(bucket, name)]
        return {"kind": "storage#object", "bucket": bucket, "name": name,
                "size": str(len(data)), "generation": str(self.generation[(bucket, name)]),
                "updated": datetime.datetime.now(datetime.timezone.utc).strftime(
                    "%Y-%m-%dT%H:%M:%S.000Z")}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet unless ZOO_GCS_STANDIN_LOG is set
        if os.environ.get("ZOO_GCS_STANDIN_LOG"):
            print("gcs-standin:", fmt % args, dict(self.headers or {}), flush=True)

    # -- the proxy's CONNECT: TLS from here on, with our certificate ------------------------

    def do_CONNECT(self):
        host = self.path.split(":")[0]
        if host not in HOSTS:
            self.send_error(403, f"only {HOSTS}")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        conn = self.server.tls.wrap_socket(self.connection, server_side=True)
        self.connection = conn
        self.rfile = conn.makefile("rb", -1)
        self.wfile = socketserver._SocketWriter(conn)
        self.close_connection = False

    # -- the JSON API -----------------------------------------------------------------------

    def _reply(self, code, body=b"", headers=None, content_type="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _route(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        return url.path, query

    def do_GET(self):
        store = self.server.store
        path, q = self._route()
        host = (self.headers.get("Host") or "").split(":")[0]
        if host == "storage.googleapis.com":  # media reads: /bucket/object
            bucket, _, name = path.lstrip("/").partition("/")
            name = urllib.parse.unquote(name)
            data = store.objects.get((bucket, name))
            if data is None:
                return self._reply(404, {"error": {"code": 404, "message": "Not Found"}})
            m = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
            if m:
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else len(data) - 1
                if start >= len(data):
                    return self._reply(416, b"", content_type="text/plain")
                part = data[start:end + 1]
                return self._reply(206, part, {"Content-Range":
                                               f"bytes {start}-{start + len(part) - 1}/"
                                               f"{len(data)}"}, "application/octet-stream")
            return self._reply(200, data, content_type="application/octet-stream")
        m = re.fullmatch(r"/storage/v1/b/([^/]+)/o/(.+)", path)
        if m:
            bucket, name = m.group(1), urllib.parse.unquote(m.group(2))
            if (bucket, name) not in store.objects:
                return self._reply(404, {"error": {"code": 404, "message": "Not Found"}})
            return self._reply(200, store.meta(bucket, name))
        m = re.fullmatch(r"/storage/v1/b/([^/]+)/o", path)
        if m:
            return self._list(m.group(1), q)
        m = re.fullmatch(r"/storage/v1/b/([^/]+)", path)
        if m:
            return self._reply(200, {"kind": "storage#bucket", "name": m.group(1),
                                     "location": "US"})
        return self._reply(501, {"error": {"code": 501, "message": f"GET {self.path}"}})

    def _list(self, bucket, q):
        store = self.server.store
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter")
        limit = int(q.get("maxResults") or 1 << 30)
        items, prefixes = [], set()
        with store.lock:
            names = sorted(n for b, n in store.objects if b == bucket and n.startswith(prefix))
        for n in names:
            rest = n[len(prefix):]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter)[0] + delimiter)
            else:
                items.append({"name": n, **store.meta(bucket, n)})
        out = {"kind": "storage#objects"}
        if items:
            out["items"] = items[:limit]
        if prefixes:
            out["prefixes"] = sorted(prefixes)[:limit]
        return self._reply(200, out)

    def do_POST(self):
        store = self.server.store
        path, q = self._route()
        body = self._body()
        m = re.fullmatch(r"/upload/storage/v1/b/([^/]+)/o", path)
        if m:
            bucket, name = m.group(1), q["name"]
            if q.get("ifGenerationMatch") == "0" and (bucket, name) in store.objects:
                return self._reply(412, {"error": {"code": 412, "message": "exists"}})
            if q.get("uploadType") == "resumable":
                with store.lock:
                    store.counter += 1
                    upload = str(store.counter)
                    store.uploads[upload] = (bucket, name)
                location = (f"https://www.googleapis.com/upload/storage/v1/b/{bucket}/o?"
                            f"uploadType=resumable&upload_id={upload}")
                return self._reply(200, b"", {"Location": location})
            store.put(bucket, name, body)
            return self._reply(200, store.meta(bucket, name))
        m = re.fullmatch(r"/storage/v1/b/([^/]+)/o/(.+)/rewriteTo/b/([^/]+)/o/(.+)", path)
        if m:
            src = (m.group(1), urllib.parse.unquote(m.group(2)))
            dst = (m.group(3), urllib.parse.unquote(m.group(4)))
            if src not in store.objects:
                return self._reply(404, {"error": {"code": 404, "message": "Not Found"}})
            store.put(*dst, store.objects[src])
            return self._reply(200, {"kind": "storage#rewriteResponse", "done": True,
                                     "resource": store.meta(*dst)})
        return self._reply(501, {"error": {"code": 501, "message": f"POST {self.path}"}})

    def do_PUT(self):
        store = self.server.store
        _, q = self._route()
        body = self._body()
        upload = q.get("upload_id")
        if upload not in store.uploads:
            return self._reply(404, {"error": {"code": 404, "message": "no such upload"}})
        bucket, name = store.uploads[upload]
        content_range = self.headers.get("Content-Range") or ""
        if content_range.startswith("bytes */"):  # a status query of a finished upload
            if (bucket, name) in store.objects:
                return self._reply(200, store.meta(bucket, name))
            return self._reply(308, b"", content_type="text/plain")
        store.put(bucket, name, body)
        return self._reply(200, store.meta(bucket, name))

    def do_DELETE(self):
        store = self.server.store
        path, _ = self._route()
        m = re.fullmatch(r"/storage/v1/b/([^/]+)/o/(.+)", path)
        if m:
            key = (m.group(1), urllib.parse.unquote(m.group(2)))
            with store.lock:
                found = store.objects.pop(key, None) is not None
            return self._reply(204 if found else 404, b"" if found else
                               {"error": {"code": 404, "message": "Not Found"}})
        return self._reply(501, {"error": {"code": 501, "message": f"DELETE {self.path}"}})


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


class GcsStandin:
    """The proxy + object store, serving on 127.0.0.1 in a thread of this process."""

    def __init__(self, directory):
        self.cert, key = make_certificate(str(directory))
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.store = _Store()
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(self.cert, key)
        self.server.tls = tls
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def env(self):
        """Environment variables that send a process's gs:// traffic here."""
        proxy = f"http://127.0.0.1:{self.server.server_address[1]}"
        return {"HTTPS_PROXY": proxy, "https_proxy": proxy, "CURL_CA_BUNDLE": self.cert,
                "GOOGLE_AUTH_TOKEN_FOR_TESTING": "zoo-test", "NO_GCE_CHECK": "true",
                "GCS_RETRY_CONFIG_MAX_RETRIES": "2", "GCS_RETRY_CONFIG_INIT_DELAY_TIME_US": "1000"}

    def objects(self, bucket):
        """{name: bytes} of a bucket."""
        store = self.server.store
        with store.lock:
            return {n: d for (b, n), d in store.objects.items() if b == bucket}

    def download(self, bucket, prefix, directory):
        """Copies the objects under `prefix` into a local directory (for checks)."""
        for name, data in self.objects(bucket).items():
            if name.startswith(prefix) and not name.endswith("/"):
                path = os.path.join(directory, name[len(prefix):].lstrip("/"))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
