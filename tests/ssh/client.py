#!/usr/bin/python3
"""One ssh login with paramiko: publickey, then keyboard-interactive, then a command.

Run with Debian's /usr/bin/python3 (package python3-paramiko). Prints one marker per
line for tests/tests/sshd.rs to parse; text values are JSON strings:

  PUBLICKEY_NEXT ["keyboard-interactive"]   methods left after the key was accepted
  ROUND {"title": ..., "instructions": ..., "prompts": [[text, echo], ...]}
  ANSWER 123456                             an answer sent to the prompt above
  GIVE_UP                                   a prompt came but no answers were left
  RESULT success | RESULT denied ERROR      how authentication ended
  STDOUT "..." / EXIT_STATUS N              the command's output and status
  ELAPSED_MS N                              wall time from connect to RESULT

Usage: client.py --port P --user U --key FILE [--host H] [--source ADDR]
                 [--answer CODE]... [--command CMD] [--timeout SECONDS]
Answers are used in order, one per prompt. When a prompt comes and none are left,
the client gives up (closes the connection): that login is denied.
"""
import argparse
import json
import logging
import socket
import sys
import time

import paramiko


class GiveUp(Exception):
    pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--source", help="local address to bind, e.g. 127.0.0.2")
    ap.add_argument("--answer", action="append", default=[])
    ap.add_argument("--command", default="id -un")
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()

    # A give-up is reported by the markers; keep paramiko's thread from also
    # printing it as an "Unknown exception" traceback.
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    logging.getLogger("paramiko").propagate = False

    answers = list(a.answer)
    started = time.monotonic()

    def out(*parts):
        print(*parts, flush=True)

    def handler(title, instructions, prompts):
        out("ROUND " + json.dumps({
            "title": title,
            "instructions": instructions,
            "prompts": [[p, bool(e)] for p, e in prompts],
        }))
        replies = []
        for _ in prompts:
            if not answers:
                out("GIVE_UP")
                raise GiveUp("no answers left")
            replies.append(answers.pop(0))
            out("ANSWER " + replies[-1])
        return replies

    source = (a.source, 0) if a.source else None
    sock = socket.create_connection((a.host, a.port), timeout=a.timeout,
                                    source_address=source)
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = a.timeout
        transport.auth_timeout = a.timeout
        transport.start_client(timeout=a.timeout)
        key = paramiko.Ed25519Key.from_private_key_file(a.key)
        try:
            left = transport.auth_publickey(a.user, key)
        except paramiko.AuthenticationException as e:
            out("RESULT denied " + json.dumps("publickey: " + str(e)))
            return 1
        out("PUBLICKEY_NEXT " + json.dumps(list(left)))
        try:
            transport.auth_interactive(a.user, handler)
        except (paramiko.AuthenticationException, paramiko.SSHException, GiveUp,
                EOFError, OSError) as e:
            out("RESULT denied " + json.dumps(f"{type(e).__name__}: {e}"))
            out(f"ELAPSED_MS {int((time.monotonic() - started) * 1000)}")
            return 1
        if not transport.is_authenticated():
            out("RESULT denied " + json.dumps("not authenticated"))
            return 1
        out("RESULT success")
        out(f"ELAPSED_MS {int((time.monotonic() - started) * 1000)}")
        chan = transport.open_session(timeout=a.timeout)
        chan.settimeout(a.timeout)
        chan.exec_command(a.command)
        data = b""
        while True:
            chunk = chan.recv(65536)
            if not chunk:
                break
            data += chunk
        status = chan.recv_exit_status()
        out("STDOUT " + json.dumps(data.decode("utf-8", "replace")))
        out(f"EXIT_STATUS {status}")
        return 0
    finally:
        transport.close()
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
