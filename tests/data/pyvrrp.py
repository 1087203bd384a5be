#!/usr/bin/env python3
"""Minimal VRRP advert sender/listener (stand-in for the implementation under
test), used to test netns-keepalived.sh end to end and to probe how keepalived
validates received adverts.  (Copied from ../shared/data/vrrp/tools/ for lb's
VRRP tests, with --truncate added: tests/tests/vrrp_failover.rs sends every
kind of bad advert with it.)  Run inside a namespace, e.g.
    ip netns exec vk-dut python3 pyvrrp.py send --version 2 --prio 200 --duration 5
    ip netns exec vk-dut python3 pyvrrp.py listen --duration 3

send options (defaults match netns-keepalived.sh defaults):
  --iface eth0 --version 2|3 --vrid 51 --prio N --adv SECONDS --vip ADDR (repeatable)
  --ipv6  --auth-pass S (v2: auth type 1)  --auth-type N (override)  --count N | --duration S
  --ttl 255  --dst ADDR (unicast)  --src ADDR  --checksum good|bad|v3-nopseudo  --final-prio0
  --adv-field N (raw advert-interval field value, overrides --adv)
  --truncate N (send only the first N bytes of the VRRP message: a short packet)
listen options:
  --iface eth0 --ipv6 --duration S     prints one JSON object per received advert
"""
import argparse
import ipaddress
import json
import select
import socket
import struct
import subprocess
import sys
import time

PROTO = 112


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def iface_addr(iface, v6):
    fam = "-6" if v6 else "-4"
    scope = ["scope", "link"] if v6 else []
    out = subprocess.check_output(["ip", "-o", fam, "addr", "show", "dev", iface] + scope, text=True)
    for line in out.splitlines():
        a = line.split()[3].split("/")[0]
        return a
    raise SystemExit("no %s address on %s" % ("link-local IPv6" if v6 else "IPv4", iface))


def build(a, src, dst, prio):
    v6 = a.ipv6
    addrs = b"".join(ipaddress.ip_address(x).packed for x in a.vip)
    if a.version == 2:
        adv = a.adv_field if a.adv_field is not None else int(round(a.adv))
        auth_type = a.auth_type if a.auth_type is not None else (1 if a.auth_pass else 0)
        hdr = struct.pack("!BBBBBBH", 0x21, a.vrid, prio, len(a.vip), auth_type, adv, 0)
        tail = (a.auth_pass or "").encode()[:8].ljust(8, b"\0")
        msg = hdr + addrs + tail
        ck = csum(msg)
    else:
        adv = a.adv_field if a.adv_field is not None else int(round(a.adv * 100))
        hdr = struct.pack("!BBBBHH", 0x31, a.vrid, prio, len(a.vip), adv & 0x0FFF, 0)
        msg = hdr + addrs
        s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
        if v6:
            pseudo = s + d + struct.pack("!I3xB", len(msg), PROTO)
        else:
            pseudo = s + d + struct.pack("!BBH", 0, PROTO, len(msg))
        ck = csum(msg) if a.checksum == "v3-nopseudo" else csum(pseudo + msg)
    if a.checksum == "bad":
        ck ^= 0x5A5A
    out = msg[:6] + struct.pack("!H", ck) + msg[8:]
    return out[:a.truncate] if a.truncate is not None else out


def open_sock(a):
    ifindex = socket.if_nametoindex(a.iface)
    if a.ipv6:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, PROTO)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, a.ttl)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, a.ttl)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, 0xC0)
        src = a.src or iface_addr(a.iface, True)
        s.bind((src, 0, 0, ifindex))
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, PROTO)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, a.ttl)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, a.ttl)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0xC0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, a.iface.encode())
        src = a.src or iface_addr(a.iface, False)
        s.bind((src, 0))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(src))
    return s, src, ifindex


def cmd_send(a):
    if not a.vip:
        a.vip = ["fd00:200::10"] if a.ipv6 else ["10.200.0.10"]
    s, src, ifindex = open_sock(a)
    dst = a.dst or ("ff02::12" if a.ipv6 else "224.0.0.18")
    sa = (dst, 0, 0, ifindex) if a.ipv6 else (dst, 0)
    n, t_last = 0, None
    t_end = time.time() + a.duration if a.duration else None
    nxt = time.time()
    while a.count is None or n < a.count:
        s.sendto(build(a, src, dst, a.prio), sa)
        t_last = time.time()
        n += 1
        nxt += a.adv
        if (a.count is not None and n >= a.count) or (t_end and nxt >= t_end):
            break  # return right after the last advert, not one interval later
        time.sleep(max(0, nxt - time.time()))
    if a.final_prio0:
        s.sendto(build(a, src, dst, 0), sa)
        t_last = time.time()
        n += 1
    print(json.dumps({"sent": n, "src": src, "dst": dst, "t_last": t_last}), flush=True)


def decode(buf, v6, src, dst, ttl):
    d = {"t": round(time.time(), 6), "src": src, "dst": dst, "ttl": ttl}
    ver = buf[0] >> 4
    d.update(version=ver, type=buf[0] & 15, vrid=buf[1], prio=buf[2], count=buf[3])
    alen = 16 if v6 else 4
    end = 8 + buf[3] * alen
    d["addrs"] = [str(ipaddress.ip_address(buf[i:i + alen])) for i in range(8, end, alen)]
    if ver == 2:
        d.update(auth_type=buf[4], adv=buf[5], auth=buf[end:end + 8].rstrip(b"\0").decode("ascii", "replace"))
        msg = buf[:end + 8]
        d["checksum_ok"] = csum(msg[:6] + b"\0\0" + msg[8:]) == struct.unpack("!H", msg[6:8])[0]
    else:
        d["adv_cs"] = struct.unpack("!H", buf[4:6])[0] & 0x0FFF
        msg = buf[:end]
        s, t = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
        pseudo = s + t + (struct.pack("!I3xB", len(msg), PROTO) if v6 else struct.pack("!BBH", 0, PROTO, len(msg)))
        d["checksum_ok"] = csum(pseudo + msg[:6] + b"\0\0" + msg[8:]) == struct.unpack("!H", msg[6:8])[0]
    return d


def cmd_listen(a):
    ifindex = socket.if_nametoindex(a.iface)
    if a.ipv6:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, PROTO)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                     socket.inet_pton(socket.AF_INET6, "ff02::12") + struct.pack("@I", ifindex))
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, PROTO)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, a.iface.encode())
        src = iface_addr(a.iface, False)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                     socket.inet_aton("224.0.0.18") + socket.inet_aton(src))
    t_end = time.time() + a.duration
    while True:
        left = t_end - time.time()
        if left <= 0:
            break
        r, _, _ = select.select([s], [], [], left)
        if not r:
            continue
        if a.ipv6:
            data, anc, _flags, addr = s.recvmsg(2048, 256)
            hlim, dst = None, "ff02::12"
            for lvl, typ, val in anc:
                if lvl == socket.IPPROTO_IPV6 and typ == socket.IPV6_HOPLIMIT:
                    hlim = struct.unpack("@i", val[:4])[0]
                if lvl == socket.IPPROTO_IPV6 and typ == socket.IPV6_PKTINFO:
                    dst = str(ipaddress.ip_address(val[:16]))
            d = decode(data, True, addr[0].split("%")[0], dst, hlim)
        else:
            data = s.recv(2048)
            ihl = (data[0] & 15) * 4
            src = socket.inet_ntoa(data[12:16])
            dst = socket.inet_ntoa(data[16:20])
            d = decode(data[ihl:], False, src, dst, data[8])
        print(json.dumps(d), flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("send")
    sp.add_argument("--iface", default="eth0")
    sp.add_argument("--version", type=int, default=2, choices=[2, 3])
    sp.add_argument("--vrid", type=int, default=51)
    sp.add_argument("--prio", type=int, default=200)
    sp.add_argument("--adv", type=float, default=1.0)
    sp.add_argument("--adv-field", type=int)
    sp.add_argument("--vip", action="append")
    sp.add_argument("--ipv6", action="store_true")
    sp.add_argument("--auth-pass")
    sp.add_argument("--auth-type", type=int)
    sp.add_argument("--count", type=int)
    sp.add_argument("--duration", type=float)
    sp.add_argument("--ttl", type=int, default=255)
    sp.add_argument("--dst")
    sp.add_argument("--src", help="source address (default: first IPv4 / link-local IPv6 of --iface)")
    sp.add_argument("--checksum", default="good", choices=["good", "bad", "v3-nopseudo"])
    sp.add_argument("--final-prio0", action="store_true")
    sp.add_argument("--truncate", type=int)
    lp = sub.add_parser("listen")
    lp.add_argument("--iface", default="eth0")
    lp.add_argument("--ipv6", action="store_true")
    lp.add_argument("--duration", type=float, default=3)
    a = ap.parse_args()
    if a.cmd == "send":
        if a.ipv6 and a.version == 2:
            sys.exit("IPv6 needs --version 3")
        if a.count is None and not a.duration:
            a.count = 0 if a.final_prio0 else 1
        cmd_send(a)
    else:
        cmd_listen(a)


if __name__ == "__main__":
    main()
