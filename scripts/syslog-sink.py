#!/usr/bin/env python3
"""A minimal syslog receiver for tests and the demo: binds a Unix datagram socket
(like /dev/log) and appends every record it receives, one per line, to a file."""
import os
import socket
import sys

if len(sys.argv) != 3:
    sys.exit("usage: syslog-sink.py SOCKET LOGFILE")
path, out = sys.argv[1], sys.argv[2]
try:
    os.unlink(path)
except FileNotFoundError:
    pass
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
os.chmod(path, 0o666)
with open(out, "ab", buffering=0) as log:
    while True:
        data = sock.recv(65536)
        log.write(data.rstrip(b"\n") + b"\n")
