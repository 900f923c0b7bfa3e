#!/usr/bin/env python3
"""A tiny server for the demo: answers every TCP connection and UDP datagram
with the address it came from ("peer 198.18.1.2:20001"), so the client sees
which uplink address the router gave it. Exits by itself after --seconds."""
import argparse
import socket
import socketserver
import threading
import time


class Tcp(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(5)
        ip, port = self.client_address
        self.request.sendall(f"peer {ip}:{port} {self.server.tag}\n".encode())


class Udp(socketserver.BaseRequestHandler):
    def handle(self):
        _, sock = self.request
        ip, port = self.client_address
        sock.sendto(f"peer {ip}:{port} {self.server.tag}\n".encode(), self.client_address)


class ThreadingTcp(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", action="append", required=True, help="ADDR:PORT, TCP and UDP")
    parser.add_argument("--tag", default="")
    parser.add_argument("--seconds", type=float, default=120)
    args = parser.parse_args()
    for spec in args.listen:
        addr, port = spec.rsplit(":", 1)
        for cls, handler in ((ThreadingTcp, Tcp), (socketserver.UDPServer, Udp)):
            server = cls((addr, int(port)), handler)
            server.tag = args.tag
            threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    time.sleep(args.seconds)


if __name__ == "__main__":
    main()
