"""A real nginx serving files as the origin of a cached bucket, its access log the
count of origin fetches; and an origin that accepts connections but never answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from .procs import free_port

NGINX = "/usr/sbin/nginx"  # Debian's nginx-light (make deps installs it)


def make_ca(work: Path, name: str) -> tuple[Path, Path]:
    """A throwaway CA (openssl's CLI): its certificate and key, PEM."""
    cert, key = work / f"{name}.pem", work / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", f"/CN={name}", "-addext",
                    "basicConstraints=critical,CA:TRUE", "-addext",
                    "keyUsage=critical,keyCertSign"], check=True, capture_output=True)
    return cert, key


def make_server_cert(work: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost signed by ca: (cert, key)."""
    cert, key, csr, ext = (work / "server.pem", work / "server.key", work / "server.csr",
                           work / "server.ext")
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(csr), "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey",
                    str(ca[1]), "-CAcreateserial", "-out", str(cert), "-days", "2",
                    "-extfile", str(ext)], check=True, capture_output=True)
    return cert, key


class Origin:
    """nginx on 127.0.0.1:<port> serving <dir>/www; `cache_control` on /static/. With
    `tls`, over https only, its certificate (127.0.0.1, localhost) signed by a CA of
    its own, `ca_file`."""

    def __init__(self, work: Path, cache_control: str = "max-age=60", dav: bool = False,
                 tls: bool = False) -> None:
        assert os.path.exists(NGINX), "nginx is missing; `make deps` installs nginx-light"
        self.dir = work
        self.www = work / "www" / "static"
        self.www.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = work / "access.log"
        self.conf = work / "nginx.conf"
        self.cache_control = cache_control
        self.dav = dav  # PUT and DELETE accepted (nginx's WebDAV module)
        self.tls = tls
        if tls:
            ca = make_ca(work, "origin-ca")
            self.ca_file = ca[0]
            self.cert, self.key = make_server_cert(work, ca)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/static/"

    def start(self) -> None:
        d = self.dir
        # The test's files are root's (0700 temp dirs): the workers must be able to read them.
        user = "user root;" if os.geteuid() == 0 else ""
        self.conf.write_text(f"""
{user}
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log {self.log};
  client_max_body_size 0;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{self.port}{" ssl" if self.tls else ""};
    {f"ssl_certificate {self.cert}; ssl_certificate_key {self.key};" if self.tls else ""}
    root {d}/www;
    location /static/ {{
      add_header Cache-Control "{self.cache_control}";
      {"dav_methods PUT DELETE; create_full_put_path on;" if self.dav else ""}
    }}
  }}
}}
""")
        self.proc = subprocess.Popen([NGINX, "-c", str(self.conf), "-p", str(d)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, (d / "error.log").read_text()
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        self.proc = None

    def fetches(self, name: str) -> list[str]:
        """The access-log lines for /static/<name>."""
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text().splitlines()
                if f"GET /static/{name} " in line]

    def wait_fetches(self, name: str, count: int, timeout: float = 5.0) -> list[str]:
        """fetches(name) once it has `count` lines, or as it is at the deadline:
        nginx logs a request after its answer went out, so the client it answered
        (the appliance, and through it the test) can be there first."""
        import time

        deadline = time.monotonic() + timeout
        while len(lines := self.fetches(name)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return lines


class SilentOrigin:
    """Accepts connections and reads, never answers (a hung origin)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def close(self) -> None:
        self.sock.close()


class PausingOrigin:
    """An HTTP/1.1 origin in a thread: every GET is answered 200 with
    `Cache-Control: max-age=3600` and random bytes of its own, at once, except
    `pause_path`, whose body stops after `pause_after` bytes until `resume` is
    set. `fetches` counts the requests for each path. With `etag`, every answer
    carries that ETag (quoted) and a fixed Last-Modified."""

    LAST_MODIFIED = "Tue, 01 Dec 2026 10:00:00 GMT"

    def __init__(self, size: int, pause_path: str, pause_after: int,
                 etag: str | None = None) -> None:
        import threading

        self.size, self.pause_path, self.pause_after = size, pause_path, pause_after
        self.etag = etag
        self.bodies: dict[str, bytes] = {}
        self.fetches: dict[str, int] = {}
        self.paused = threading.Event()  # set once the paused body is half sent
        self.resume = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def body(self, path: str) -> bytes:
        return self.bodies.setdefault(path, os.urandom(self.size))

    def _accept(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._answer(conn)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the appliance went away mid-body (a test that failed, or ended early)

    def _answer(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    got = conn.recv(65536)
                    if not got:
                        return
                    buf += got
                head, buf = buf.split(b"\r\n\r\n", 1)
                path = head.split(b" ")[1].decode()
                self.fetches[path] = self.fetches.get(path, 0) + 1
                body = self.body(path)
                validators = (f'ETag: "{self.etag}"\r\nLast-Modified: {self.LAST_MODIFIED}\r\n'
                              if self.etag else "")
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                             b"Cache-Control: max-age=3600\r\n%s\r\n"
                             % (len(body), validators.encode()))
                if path == self.pause_path:
                    conn.sendall(body[:self.pause_after])
                    self.paused.set()
                    self.resume.wait(60)
                    conn.sendall(body[self.pause_after:])
                else:
                    conn.sendall(body)

    def close(self) -> None:
        self.resume.set()
        self.sock.close()


class S3Origin:
    """moto's S3 server on 127.0.0.1:<port>, with one bucket, used path-style as the
    origin of kind: s3 buckets. By default the bucket is public (anyone may read and
    write it, unsigned). With `private`, moto checks every request's signature
    (INITIAL_NO_AUTH_ACTION_COUNT): only an IAM user's key, made here (`key_id`,
    `secret`), gets in; an unsigned request is 403, a wrong signature
    SignatureDoesNotMatch."""

    def __init__(self, work: Path, bucket: str = "origin-data", private: bool = False) -> None:
        import shutil
        import sys

        exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or \
            shutil.which("moto_server")
        assert exe, "moto_server is missing; `make deps` installs moto[server]"
        self.port = free_port()
        self.bucket = bucket
        self.log = open(work / "moto.log", "wb")  # noqa: SIM115  (closed in stop)
        self.key_id, self.secret = "test", "test"
        # The three IAM calls below are the only unauthenticated ones moto then allows.
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3") if private else None
        self.proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (work / "moto.log").read_text()
                time.sleep(0.1)
        import json

        if private:
            import boto3

            iam = boto3.client("iam", endpoint_url=self.url, region_name="us-east-1",
                               aws_access_key_id="x", aws_secret_access_key="x")
            iam.create_user(UserName="cache")
            key = iam.create_access_key(UserName="cache")["AccessKey"]
            self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
            iam.put_user_policy(UserName="cache", PolicyName="objects", PolicyDocument=json.dumps(
                {"Version": "2012-10-17",
                 "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
            self.client().create_bucket(Bucket=bucket)
            return
        self.client().create_bucket(Bucket=bucket)
        # The appliance's requests are unsigned: the bucket lets anyone read and write,
        # as a public origin bucket would.
        self.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": "*",
                           "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                           "Resource": f"arn:aws:s3:::{bucket}/*"}]}))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def client(self):  # noqa: ANN201  (a boto3 client)
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=self.key_id, aws_secret_access_key=self.secret,
                            config=Config(s3={"addressing_style": "path"}))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        self.log.close()
