"""A tiny raw WebSocket client (RFC 6455) over TLS, for tests/tests/http.rs.

Usage: ws_client.py HOST PORT CA_FILE PATH MODE [MESSAGE...] < token
The token (stdin) goes in `Authorization: Bearer`. Prints one JSON object:
  {"status": 101, "headers": {...}, ...} and, by MODE:
  echo      send each MESSAGE as a text message (the first split in two fragments,
            with a Ping between), then a binary one, read the echoes, close:
            "echoes": [...], "echo_frames": [data frames per echo], "binary_echo": N
            (-1 when a Close came instead), "close": [code, reason]
  oversize  send a frame header announcing 32 MiB: "close": [code, reason] or null,
            "eof": true when the connection ended
  unmasked  send an unmasked text frame (clients must mask): as oversize
  big       send a 1.2 MB text message in two fragments (each echoed as it came): as
            oversize
  badutf8   send a text message that is not UTF-8 (echoed as it came): as oversize
Standard library only: no client library normalizes what is sent.
"""
import base64
import json
import os
import socket
import ssl
import struct
import sys
import time

host, port, ca, path, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
messages = sys.argv[6:]
token = sys.stdin.read().strip()


def frame(opcode, payload, fin=True, mask=True):
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Reader:
    def __init__(self, sock, buf):
        self.sock, self.buf = sock, buf

    def take(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError()
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self):
        b0, b1 = self.take(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self.take(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self.take(8))[0]
        return b0 & 0x80 != 0, b0 & 0x0F, self.take(n)


def close_of(payload):
    code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
    return [code, payload[2:].decode("utf-8", "replace")]


def read_close(reader, out):
    """Read until a Close frame or the end; record both."""
    out["close"], out["eof"] = None, False
    try:
        while True:
            _, opcode, payload = reader.frame()
            if opcode == 8:
                out["close"] = close_of(payload)
                reader.take(1)
    except (EOFError, ConnectionResetError, ssl.SSLError, socket.timeout, OSError):
        out["eof"] = True


ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])
out = {}
with socket.create_connection((host, port), timeout=20) as raw:
    with ctx.wrap_socket(raw, server_hostname=host) as tls:
        key = base64.b64encode(os.urandom(16)).decode()
        tls.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                f"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
            ).encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        out["status"] = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
        out["headers"] = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        if out["status"] != 101:
            out["body"] = rest.decode("utf-8", "replace")
            print(json.dumps(out))
            sys.exit(0)
        reader = Reader(tls, rest)
        if mode == "echo":
            echoes, echo_frames = [], []
            for i, msg in enumerate(messages):
                data = msg.encode()
                if i == 0 and len(data) > 1:
                    half = len(data) // 2
                    tls.sendall(frame(1, data[:half], fin=False) + frame(9, b"ping") + frame(0, data[half:]))
                else:
                    tls.sendall(frame(1, data))
                got, frames = b"", 0
                while True:
                    fin, opcode, payload = reader.frame()
                    if opcode in (0, 1):
                        got += payload
                        frames += 1
                        if fin:
                            break
                echoes.append(got.decode())
                echo_frames.append(frames)
            out["echoes"], out["echo_frames"] = echoes, echo_frames
            tls.sendall(frame(2, bytes(range(256)) * 4))
            _, opcode, payload = reader.frame()
            while opcode in (9, 10):
                _, opcode, payload = reader.frame()
            out["binary_echo"] = len(payload) if opcode == 2 else -1
            if opcode == 8:
                out["close"] = close_of(payload)
                try:
                    while True:
                        reader.frame()
                except (EOFError, ConnectionResetError, ssl.SSLError, socket.timeout, OSError):
                    out["eof"] = True
            else:
                tls.sendall(frame(8, struct.pack(">H", 1000) + b"done"))
                read_close(reader, out)
        elif mode == "oversize":
            tls.sendall(bytes([0x82, 0xFF]) + struct.pack(">Q", 32 << 20) + os.urandom(4) + b"x" * 1000)
            read_close(reader, out)
        elif mode == "big":
            half = b"a" * 600_000
            tls.sendall(frame(1, half, fin=False) + frame(0, half))
            read_close(reader, out)
        elif mode == "badutf8":
            tls.sendall(frame(1, b"bad \xff\xfe"))
            read_close(reader, out)
        elif mode == "idle":
            # One message and its echo, then silence: the gateway's idle limit closes it.
            tls.sendall(frame(1, messages[0].encode()))
            got = b""
            while True:
                fin, opcode, payload = reader.frame()
                if opcode in (0, 1):
                    got += payload
                    if fin:
                        break
            out["echoes"] = [got.decode()]
            started = time.monotonic()
            read_close(reader, out)
            out["silent_secs"] = round(time.monotonic() - started, 1)
        elif mode == "unmasked":
            tls.sendall(frame(1, b"hello unmasked", mask=False))
            read_close(reader, out)
print(json.dumps(out))
