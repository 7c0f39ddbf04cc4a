#!/usr/bin/env python3
"""Prints a TCP port free on 127.0.0.1 for a server the tests start.

Chosen below the kernel's ephemeral range (net.ipv4.ip_local_port_range): a port the kernel hands
out for port 0 can, before the server binds it, become the source port of one of the many
outgoing connections the control plane opens, and the server then fails with "address already
in use". Ports below that range are never used that way, so once one is seen free only another
listener could take it; picking at random keeps parallel harnesses apart.
"""
import random
import socket

try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
        ephemeral_low = int(ports.read().split()[0])
except OSError:
    ephemeral_low = 32768
low, high = 20000, max(20001, ephemeral_low - 1)
for _ in range(500):
    port = random.randint(low, high)
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            continue
    print(port)
    break
else:
    raise SystemExit("no free port found below the ephemeral range")
