"""Send raw bytes to the gateway's HTTP door over TLS and print the response's status line.

Usage: raw_http.py HOST PORT CA_FILE < request-bytes
For the smuggling tests (tests/tests/http.rs): the request is sent exactly as given,
with no client library normalizing it.
"""
import socket
import ssl
import sys

host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
payload = sys.stdin.buffer.read()
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])
with socket.create_connection((host, port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(payload)
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (socket.timeout, ConnectionResetError, ssl.SSLError):
            pass
        print(data.split(b"\r\n", 1)[0].decode("latin-1") or "(closed)")
