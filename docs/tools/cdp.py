"""cdp.py - drives a headless Chromium over the DevTools protocol with
nothing but Python's standard library (a minimal WebSocket client).

    with Browser("/usr/bin/chromium") as b:
        b.call("Page.navigate", url=...)
        b.wait_event("Page.loadEventFired")

One page (a tab the browser is told to open) is attached in flat mode;
calls and events go through its session. Events that arrive while a call
waits for its answer are kept in `events`, in order, for the caller to
inspect and clear.
"""
import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--no-default-browser-check",
         "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0"]


class WebSocket:
    """Text frames over one TCP connection, client side (RFC 6455)."""

    def __init__(self, url, timeout):
        m = re.match(r"ws://([^:/]+):(\d+)(/.*)", url)
        host, port, path = m.group(1), int(m.group(2)), m.group(3)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
             "Upgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
            .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("DevTools closed during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(f"no WebSocket upgrade: {head[:80]!r}")

    def send(self, text):
        data = text.encode()
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(header + mask + body)

    def exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            buf += chunk
        return bytes(buf)

    def recv(self):
        parts = []
        while True:
            b0, b1 = self.exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self.exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self.exact(8))[0]
            mask = self.exact(4) if b1 & 0x80 else None
            data = self.exact(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            opcode = b0 & 0x0F
            if opcode == 8:
                raise ConnectionError("DevTools closed the connection")
            if opcode == 9:  # ping: answer, keep reading
                self.sock.sendall(struct.pack("!BB", 0x8A, 0x80 | len(data))
                                  + b"\0\0\0\0" + data)
                continue
            if opcode in (0, 1, 2):
                parts.append(data)
                if b0 & 0x80:
                    return b"".join(parts).decode()

    def close(self):
        self.sock.close()


class Browser:
    def __init__(self, executable, timeout=30.0):
        self.executable, self.timeout = executable, timeout
        self.events, self.next_id = [], 0
        self.proc = self.ws = self.session = None
        self.profile = tempfile.mkdtemp(prefix="cfdoc-chromium-")

    def __enter__(self):
        self.proc = subprocess.Popen(
            [self.executable] + FLAGS + [f"--user-data-dir={self.profile}",
                                         "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        deadline = time.time() + self.timeout
        url = None
        while url is None:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"{self.executable} exited with "
                                   f"{self.proc.returncode} before DevTools "
                                   "listened")
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                url = m.group(1)
            if time.time() > deadline:
                raise TimeoutError("Chromium's DevTools did not start")
        # Chromium keeps writing to stderr; drain it so it never blocks.
        self.stderr_lines = []
        threading.Thread(target=self.drain, daemon=True).start()
        self.ws = WebSocket(url, self.timeout)
        target = self.call("Target.createTarget", url="about:blank")
        self.session = self.call("Target.attachToTarget",
                                 targetId=target["targetId"],
                                 flatten=True)["sessionId"]
        return self

    def drain(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip())

    def __exit__(self, *exc):
        try:
            if self.ws:
                self.session = None
                self.call("Browser.close")
        except (OSError, ConnectionError, RuntimeError):
            pass
        finally:
            if self.ws:
                self.ws.close()
            if self.proc:
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method, **params):
        """Sends a command (to the page's session once attached) and
        returns its result; events read meanwhile go to `events`."""
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if self.session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method, timeout=None):
        """Returns the first kept or new event named `method`."""
        deadline = time.time() + (timeout or self.timeout)
        while True:
            for e in self.events:
                if e["method"] == method:
                    return e
            if time.time() > deadline:
                raise TimeoutError(f"no {method} within the time limit")
            self.ws.sock.settimeout(max(0.1, deadline - time.time()))
            try:
                reply = json.loads(self.ws.recv())
            except socket.timeout:
                continue
            finally:
                self.ws.sock.settimeout(self.timeout)
            if "method" in reply:
                self.events.append(reply)
