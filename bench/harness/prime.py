#!/usr/bin/env python3
"""Priming for scripts/bench: every flow of a flood's flow set gets one reply
from the far side, so the flood then measures established flows, as real
UDP traffic (QUIC, DNS, games, VPN) is.

  reflect: in an ISP namespace, an AF_PACKET socket on the customer-facing
           interface sees the flood's UDP datagrams to --dst, IPv4 or IPv6
           (which the ISP then drops with its blackhole route) and answers the
           first of each source tuple with one datagram back, ports and
           addresses swapped, sent out of the same interface. Bounded: --max
           replies, --seconds. Prints the number of replies sent.
  sink:    on the LAN host, a UDP socket on the flood's source address and
           port (ADDR:PORT, or [ADDR]:PORT for IPv6) takes the replies (so the
           host sends no port unreachable) and counts the distinct far ends
           heard from; exits when --expect have answered or after --seconds.
           Prints that count.

Both print "ready" on stderr once their socket is open."""
import argparse
import signal
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
IPPROTO_UDP = 17

# Set by SIGTERM: the loop ends within its 0.2 s receive timeout and the
# count is still printed.
stopped = False


def stop(*_):
    global stopped
    stopped = True


def checksum(data):
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def reply_to(frame, dst):
    """(source tuple, reply frame) for a UDP datagram to `dst`, or None for
    any other frame (another protocol or address, a fragment, a truncated
    one)."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[14] >> 4 != 4 or ihl < 20 or len(frame) < 14 + ihl + 8:
        return None
    ip = frame[14 : 14 + ihl]
    if ip[9] != IPPROTO_UDP or ip[16:20] != dst or struct.unpack("!H", ip[6:8])[0] & 0x3FFF:
        return None
    total = struct.unpack("!H", ip[2:4])[0]
    udp = frame[14 + ihl : 14 + total]
    if len(udp) < 8:
        return None
    sport, dport = udp[0:2], udp[2:4]
    payload = udp[8:]
    header = bytearray(
        struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0, 64, IPPROTO_UDP, 0, ip[16:20], ip[12:16])
    )
    header[10:12] = struct.pack("!H", checksum(bytes(header)))
    # UDP checksum 0: none, as the flood's own datagrams.
    udp_reply = dport + sport + struct.pack("!HH", 8 + len(payload), 0) + payload
    reply = frame[6:12] + frame[0:6] + frame[12:14] + bytes(header) + udp_reply
    return ip[12:16] + udp[0:4], reply


def reply_to6(frame, dst):
    """reply_to for IPv6: a UDP datagram right after the fixed header (no
    extension header), to `dst`; the reply's UDP checksum is computed, as
    IPv6 requires."""
    if len(frame) < 62 or frame[12:14] != b"\x86\xdd" or frame[14] >> 4 != 6:
        return None
    ip = frame[14:54]
    if ip[6] != IPPROTO_UDP or ip[24:40] != dst:
        return None
    length = struct.unpack("!H", ip[4:6])[0]
    udp = frame[54 : 54 + length]
    if length < 8 or len(udp) < length:
        return None
    sport, dport = udp[0:2], udp[2:4]
    payload = udp[8:]
    src, to = ip[24:40], ip[8:24]
    udp_reply = bytearray(dport + sport + struct.pack("!HH", length, 0) + payload)
    pseudo = src + to + struct.pack("!IxxxB", length, IPPROTO_UDP)
    udp_reply[6:8] = struct.pack("!H", checksum(pseudo + bytes(udp_reply)) or 0xFFFF)
    header = struct.pack("!IHBB", 6 << 28, length, IPPROTO_UDP, 64) + src + to
    reply = frame[6:12] + frame[0:6] + frame[12:14] + header + bytes(udp_reply)
    return to + udp[0:4], reply


def reflect(args):
    if ":" in args.dst:
        dst, ethertype, answer_to = socket.inet_pton(socket.AF_INET6, args.dst), ETH_P_IPV6, reply_to6
    else:
        dst, ethertype, answer_to = socket.inet_aton(args.dst), ETH_P_IP, reply_to
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
    # Room for a burst of the flood: the replies are made one at a time.
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
    s.bind((args.interface, ethertype))
    s.settimeout(0.2)
    print("ready", file=sys.stderr, flush=True)
    seen = set()
    deadline = time.monotonic() + args.seconds
    while len(seen) < args.max and time.monotonic() < deadline and not stopped:
        try:
            frame, addr = s.recvfrom(2048)
        except socket.timeout:
            continue
        if addr[2] == PACKET_OUTGOING:
            continue
        answer = answer_to(frame, dst)
        if answer is None:
            continue
        key, reply = answer
        if key in seen:
            continue
        seen.add(key)
        s.send(reply)
    print(len(seen))


def sink(args):
    host, port = args.listen.rsplit(":", 1)
    family = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
    host = host.strip("[]")
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
    s.bind((host, int(port)))
    s.settimeout(0.2)
    print("ready", file=sys.stderr, flush=True)
    heard = set()
    deadline = time.monotonic() + args.seconds
    while len(heard) < args.expect and time.monotonic() < deadline and not stopped:
        try:
            _, peer = s.recvfrom(2048)
        except socket.timeout:
            continue
        heard.add(peer)
    print(len(heard))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("reflect")
    r.add_argument("--interface", required=True)
    r.add_argument("--dst", required=True, help="the flood's destination address, IPv4 or IPv6")
    r.add_argument("--max", type=int, required=True, help="replies at most")
    r.add_argument("--seconds", type=float, required=True)
    k = sub.add_parser("sink")
    k.add_argument("--listen", required=True, help="ADDR:PORT or [ADDR]:PORT, the flood's source")
    k.add_argument("--expect", type=int, required=True, help="far ends to hear from")
    k.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, stop)
    if args.seconds <= 0 or args.seconds > 120:
        parser.error("--seconds must be within 0..120")
    {"reflect": reflect, "sink": sink}[args.command](args)


if __name__ == "__main__":
    main()
