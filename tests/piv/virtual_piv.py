#!/usr/bin/python3
"""Virtual YubiKey 5 PIV applet for vsmartcard's ``vicc`` (test use only).

What this emulates
------------------
A YubiKey 5 (firmware 5.4.3 by default) as seen through PC/SC: the card is
attached to the real ``pcscd`` through vsmartcard's ``vpcd`` reader driver
(``VirtualICC(None, "iso7816", host, 35963)`` with our own ``SmartcardOS``), so
pcsc-lite, ``yubico-piv-tool``, ``ykman`` and the Rust ``yubikey`` crate (0.8)
talk to it exactly as they talk to a real key.

Implemented (PIV applet, AID A0 00 00 03 08):

* SELECT (A4 04 00)            -- PIV and the Yubico management applet; any
                                  other AID answers 6A82 (not found)
* GET VERSION (FD)             -- Yubico extension, 3 bytes
* GET SERIAL (F8)              -- Yubico extension, 4 bytes big-endian
* GET METADATA (F7)            -- Yubico extension (fw >= 5.3) for the PIN (80),
                                  PUK (81), management key (9B) and key slots:
                                  01 algorithm, 02 (PIN policy, touch policy),
                                  03 origin, 04 { 86 EC point }, 05 is-default,
                                  06 (total, remaining) retries
* VERIFY (20)                  -- PIN (P2=80): 8 bytes FF-padded, retry counter,
                                  empty data = status query (9000 if verified,
                                  63Cx otherwise), P1=FF = un-verify
* CHANGE REFERENCE (24), RESET RETRY (2C) -- change PIN/PUK, unblock the PIN
* GET DATA (CB 3F FF, 5C tag)  -- certificate objects of the slots (5FC105 9a,
                                  5FC10A 9c, 5FC10B 9d, 5FC101 9e, retired
                                  5FC10D..5FC120), the discovery object (7E) and
                                  any object listed in the state file / stored
                                  with PUT DATA; absent objects answer 6A82
* PUT DATA (DB 3F FF)          -- after management-key authentication
* GENERAL AUTHENTICATE (87)    -- ECDSA sign (7C{82 00, 81 digest} ->
                                  7C{82 DER signature}), ECDH (7C{82 00, 85
                                  point} -> 7C{82 shared X}), and the 3DES
                                  management-key mutual/single authentication
                                  (P1=03, P2=9B) with the witness/challenge
                                  exchange used by ykpiv, ykman and the crate
* GENERATE ASYMMETRIC (47), IMPORT KEY (FE, EC only) -- after management-key
                                  authentication; the key lives in memory and
                                  its public key is re-exported (see below)
* command chaining (CLA bit 0x10) and GET RESPONSE (C0): responses longer than
  256 bytes are cut into 256-byte pieces with status 61xx, as a real key does;
  short and extended APDU encodings are both accepted
* management applet (A0 00 00 05 27 47 11 17): SELECT answers "Virtual mgmt -
  FW version X.Y.Z" and READ CONFIG (1D) answers a DeviceInfo (serial,
  version, PIV as the only capability), which is what ``ykman --reader``
  reads before ``piv info``.

Signing convention (checked against yubikey 0.8 ``authenticated_command``,
yubico-piv-tool and ykman): for ECC the host sends the *hash* of the message,
already truncated to the key size (32 bytes for P-256, 48 for P-384).  The
card computes a plain ECDSA signature over that value as the prehashed digest
and returns it DER encoded (SEQUENCE { r INTEGER, s INTEGER }).  A shorter
input is treated as a big-endian integer (left-padded with zeros, which
leaves the ECDSA value unchanged); a longer input is refused with 6A80 (the
crate and ykpiv never send one, so a host bug shows up as an error).

Policies:

* PIN policy ``never`` / ``once`` / ``always`` (YubiKey defaults per slot:
  9a once, 9c always, 9d once, 9e never, retired once).  ``once`` needs a
  VERIFY since the last SELECT/reset; ``always`` needs a VERIFY before every
  private-key operation on that slot (one operation uses the verification
  up; operations on other slots do not).  Missing PIN -> 6982.
* Touch policy ``never`` / ``always`` / ``cached`` (a touch is remembered for
  ``cache_seconds``, 15 s like a real key).  A touch is emulated, see below.
  No touch before the timeout -> **6982** (SECURITY STATUS NOT SATISFIED).
  That is what a real YubiKey answers on a touch timeout (yubico-piv-tool
  issue #185 shows "Failed sign command with code 6982" for an untouched
  touch-always key; Yubico.NET.SDK issue #39 reports the same SW); the
  yubikey crate maps 6982 from
  GENERAL AUTHENTICATE to ``Error::AuthenticationError``.  A real key has no
  separate "touch timed out" status, so a missing PIN and a missing touch are
  indistinguishable on the wire -- exactly as here.

Touch emulation (state dir = ``--state-dir``, default: the state file's dir):

* mode ``auto``  -- the touch happens ``auto_delay`` seconds after the request.
* mode ``file``  -- the card waits (up to ``timeout`` s) for a file named
  ``touch`` in the state dir, deletes it and goes on.  A ``touch`` file that
  already exists when the request arrives counts (as if touched at once).
* mode ``never`` -- nobody touches: the card waits ``timeout`` s, then 6982.
* While waiting, ``touch-pending`` exists in the state dir (it holds the slot).
* Runtime overrides, read at every request: ``touch-mode`` (auto|file|never)
  and ``touch-timeout`` (seconds) files in the state dir.

Accounting in the state dir (for test assertions):

* ``sign-count``   -- number of successful private-key operations (sign+ECDH)
* ``touch-count``  -- number of touches consumed (cached touches not counted)
* ``events.jsonl`` -- one JSON object per private-key operation attempt:
  time, slot, op, algorithm, result (ok | pin-required | touch-timeout | ...),
  touched, input (hex)
* ``pubkey-<slot>.pem`` -- the public key of every slot that holds a key,
  written at start-up and after GENERATE / IMPORT.

What this does NOT emulate
--------------------------
RSA keys (no RSA sign/decrypt/generate), ATTEST (F9) and the attestation
slot, SET PIN RETRIES (FA), RESET (FB), SET MANAGEMENT KEY (FF), AES
management keys, the PIN-protected/derived management key conventions
(objects are simply stored), secure messaging, OTP/OATH/OpenPGP/FIDO
applets, compressed certificates, touch on the management key, real timing,
USB/HID transports, and persistence: anything changed by PUT DATA,
GENERATE, IMPORT or PIN changes lives in memory only and is lost when the
emulator exits (the state file is never rewritten).

State file (JSON), see ``make-state`` below for a generator::

    {
      "serial": 12345678,
      "version": "5.4.3",
      "pin": "123456", "puk": "12345678",
      "pin_retries": 3, "puk_retries": 3,
      "management_key": "010203040506070801020304050607080102030405060708",
      "touch": {"mode": "auto", "timeout": 15, "auto_delay": 0.1,
                "cache_seconds": 15},
      "slots": {
        "9e": {"algorithm": "ECCP256", "private_key": "-----BEGIN ...",
               "pin_policy": "never", "touch_policy": "always",
               "origin": "generated", "certificate": "-----BEGIN CERT..."}
      },
      "objects": {"5fc102": "<hex of the object's value>"}
    }

``private_key`` may be replaced by ``private_key_file`` (path, relative to the
state file).  ``certificate`` is optional (PEM, or base64 DER).

Usage::

    virtual_piv.py run [--state-dir DIR] [--host H] [--port P] [-v] STATE.json
    virtual_piv.py make-state --out STATE.json [--serial N]
                   [--slot SLOT:ALG:PIN_POLICY:TOUCH_POLICY[:cert]] ...

Runs with Debian's /usr/bin/python3: needs python3-cryptography (crypto),
python3-pycryptodome plus a ``Crypto`` shim (vicc imports ``Crypto``), and
vsmartcard-vpicc (PYTHONPATH must contain
/usr/lib/python3/site-packages/virtualsmartcard); see run-card.sh.
"""

import argparse
import base64
import datetime
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.ciphers import Cipher, modes

try:  # cryptography >= 43 moved 3DES; Debian 12 ships 38
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - depends on the installed version
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES

log = logging.getLogger("virtual_piv")

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

PIV_AID = bytes.fromhex("A000000308")
MGMT_AID = bytes.fromhex("A000000527471117")

# Response to SELECT PIV on a YubiKey 5: application property template with
# the full PIV AID (A0 00 00 03 08 00 00 10 00 01 00) and authority.
PIV_SELECT_RESPONSE = bytes.fromhex("61114F0600001000010079074F05A000000308")

# ATR of a YubiKey 5 (USB, CCID): historical bytes spell "YubiKey".
YUBIKEY5_ATR = bytes.fromhex("3BFD1300008131FE158073C021C057597562694B657940")

SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_SECURITY_STATUS = 0x6982   # PIN not verified / no touch / not authenticated
SW_AUTH_BLOCKED = 0x6983
SW_CONDITIONS = 0x6985
SW_INCORRECT_DATA = 0x6A80
SW_NOT_FOUND = 0x6A82
SW_REF_NOT_FOUND = 0x6A88
SW_WRONG_P1P2 = 0x6B00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00

# PIV algorithm identifiers (P1 of GENERAL AUTHENTICATE, metadata tag 01).
ALG_3DES = 0x03
ALG_RSA1024 = 0x06
ALG_RSA2048 = 0x07
ALG_ECCP256 = 0x11
ALG_ECCP384 = 0x14
ALG_PIN_PUK = 0xFF

ALGORITHMS = {  # name -> (id, curve, key size in bytes, prehash algorithm)
    "ECCP256": (ALG_ECCP256, ec.SECP256R1, 32, hashes.SHA256),
    "ECCP384": (ALG_ECCP384, ec.SECP384R1, 48, hashes.SHA384),
}
ALG_BY_ID = {v[0]: k for k, v in ALGORITHMS.items()}

PIN_POLICIES = {"default": 0, "never": 1, "once": 2, "always": 3}
TOUCH_POLICIES = {"default": 0, "never": 1, "always": 2, "cached": 3}
ORIGINS = {"generated": 1, "imported": 2}

KEY_PIN = 0x80
KEY_PUK = 0x81
KEY_MGMT = 0x9B

# Key slots and the data object holding each slot's certificate.
SLOT_OBJECTS = {0x9A: 0x5FC105, 0x9C: 0x5FC10A, 0x9D: 0x5FC10B, 0x9E: 0x5FC101}
for _i in range(20):  # retired key management slots 82..95 -> 5FC10D..5FC120
    SLOT_OBJECTS[0x82 + _i] = 0x5FC10D + _i

# YubiKey default PIN policy per slot (touch policy defaults to never).
DEFAULT_PIN_POLICY = {0x9A: "once", 0x9C: "always", 0x9D: "once", 0x9E: "never"}

DEFAULT_MGMT_KEY = "010203040506070801020304050607080102030405060708"

# Discovery object (7E): PIV AID + PIN usage policy (PIV PIN, no global PIN).
DISCOVERY_OBJECT = bytes.fromhex("7E124F0BA0000003080000100001005F2F024000")

# Management applet (ykman DeviceInfo) tags and capability bits.
CAPABILITY_PIV = 0x0010
FORM_FACTOR_USB_A_KEYCHAIN = 0x01


# ---------------------------------------------------------------------------
# BER-TLV helpers
# ---------------------------------------------------------------------------

def encode_length(n):
    """BER definite length, as used by PIV (at most 0x82 XX XX)."""
    if n < 0x80:
        return bytes([n])
    if n < 0x100:
        return bytes([0x81, n])
    return bytes([0x82, n >> 8, n & 0xFF])


def tlv(tag, value=b""):
    """Encode one TLV; ``tag`` is an int (multi-byte tags such as 0x7F49 ok)."""
    tag_bytes = tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big")
    return tag_bytes + encode_length(len(value)) + value


def parse_tlvs(data):
    """Parse a sequence of BER-TLVs into a list of (tag, value).

    Multi-byte tags (first byte low 5 bits all set) are returned as one int,
    e.g. 0x7F49.  Raises ValueError on a malformed encoding.
    """
    out = []
    i = 0
    while i < len(data):
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:
            while True:
                if i >= len(data):
                    raise ValueError("truncated tag")
                tag = (tag << 8) | data[i]
                i += 1
                if not data[i - 1] & 0x80:
                    break
        if i >= len(data):
            raise ValueError("missing length")
        length = data[i]
        i += 1
        if length & 0x80:
            nbytes = length & 0x7F
            if nbytes == 0 or nbytes > 3 or i + nbytes > len(data):
                raise ValueError("bad length")
            length = int.from_bytes(data[i:i + nbytes], "big")
            i += nbytes
        if i + length > len(data):
            raise ValueError("value overruns buffer")
        out.append((tag, data[i:i + length]))
        i += length
    return out


def parse_apdu(msg):
    """Split a command APDU (short or extended encoding) into its fields.

    Returns (cla, ins, p1, p2, data, le) with le None when absent.
    """
    if len(msg) < 4:
        raise ValueError("APDU shorter than 4 bytes")
    cla, ins, p1, p2 = msg[0], msg[1], msg[2], msg[3]
    body = msg[4:]
    if not body:                                    # case 1
        return cla, ins, p1, p2, b"", None
    if len(body) == 1:                              # case 2 short
        return cla, ins, p1, p2, b"", body[0] or 256
    if body[0] != 0:                                # case 3/4 short
        lc = body[0]
        data = body[1:1 + lc]
        if len(data) != lc:
            raise ValueError("Lc does not match data")
        rest = body[1 + lc:]
        le = (rest[0] or 256) if rest else None
        return cla, ins, p1, p2, data, le
    if len(body) == 3:                              # case 2 extended
        return cla, ins, p1, p2, b"", int.from_bytes(body[1:3], "big") or 65536
    lc = int.from_bytes(body[1:3], "big")           # case 3/4 extended
    data = body[3:3 + lc]
    if len(data) != lc:
        raise ValueError("extended Lc does not match data")
    rest = body[3 + lc:]
    le = (int.from_bytes(rest, "big") or 65536) if rest else None
    return cla, ins, p1, p2, data, le


class ApduError(Exception):
    """Raised by command handlers to answer with a bare status word."""

    def __init__(self, sw, why=""):
        super().__init__("%04X %s" % (sw, why))
        self.sw = sw
        self.why = why


# ---------------------------------------------------------------------------
# Key slots
# ---------------------------------------------------------------------------

class Slot:
    """One asymmetric key slot: EC private key, policies, optional cert."""

    def __init__(self, slot_id, algorithm, private_key, pin_policy,
                 touch_policy, origin="generated", certificate_der=None):
        if algorithm not in ALGORITHMS:
            raise ValueError("slot %02x: unsupported algorithm %r (only %s)"
                             % (slot_id, algorithm, ", ".join(ALGORITHMS)))
        alg_id, curve, size, _ = ALGORITHMS[algorithm]
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or \
                private_key.curve.name != curve.name:
            raise ValueError("slot %02x: private key is not on %s"
                             % (slot_id, curve.name))
        for name, table, value in (("pin_policy", PIN_POLICIES, pin_policy),
                                   ("touch_policy", TOUCH_POLICIES,
                                    touch_policy),
                                   ("origin", ORIGINS, origin)):
            if value not in table:
                raise ValueError("slot %02x: bad %s %r" % (slot_id, name,
                                                           value))
        self.slot_id = slot_id
        self.algorithm = algorithm
        self.alg_id = alg_id
        self.key_size = size
        self.private_key = private_key
        self.pin_policy = pin_policy
        self.touch_policy = touch_policy
        self.origin = origin
        self.certificate_der = certificate_der

    def public_point(self):
        """Uncompressed EC point 04||X||Y."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.X962,
            serialization.PublicFormat.UncompressedPoint)

    def public_pem(self):
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign_digest(self, digest):
        """ECDSA over an already hashed (and truncated) value, DER output."""
        if len(digest) > self.key_size:
            raise ApduError(SW_INCORRECT_DATA,
                            "input %d bytes > key size %d"
                            % (len(digest), self.key_size))
        padded = digest.rjust(self.key_size, b"\0")
        prehash = ALGORITHMS[self.algorithm][3]()
        return self.private_key.sign(padded, ec.ECDSA(utils.Prehashed(prehash)))

    def ecdh(self, point):
        curve = ALGORITHMS[self.algorithm][1]()
        try:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
        except ValueError:
            raise ApduError(SW_INCORRECT_DATA, "bad peer point")
        return self.private_key.exchange(ec.ECDH(), peer)


def _load_certificate(value):
    """Certificate from the state file: PEM text or base64 DER -> DER."""
    if value is None:
        return None
    if "BEGIN CERTIFICATE" in value:
        return x509.load_pem_x509_certificate(value.encode()).public_bytes(
            serialization.Encoding.DER)
    return base64.b64decode(value)


def _parse_slot_id(text):
    slot_id = int(text, 16)
    if slot_id not in SLOT_OBJECTS:
        raise ValueError("unknown key slot %r (want 9a 9c 9d 9e 82..95)"
                         % text)
    return slot_id


# ---------------------------------------------------------------------------
# The card
# ---------------------------------------------------------------------------

def _smartcard_os_base():
    """vicc's SmartcardOS class (imported lazily so make-state needs no vicc)."""
    from virtualsmartcard.VirtualSmartcard import SmartcardOS
    return SmartcardOS


class YubiKeyPiv:
    """APDU-level model of the YubiKey 5 PIV + management applets.

    Subclassed below with vicc's ``SmartcardOS`` (see ``make_os``); kept as a
    plain class so it can be exercised without vsmartcard.
    """

    def __init__(self, state, state_dir, base_dir):
        self.state_dir = state_dir
        self.serial = int(state.get("serial", 12345678))
        self.version = bytes(int(x) for x in
                             str(state.get("version", "5.4.3")).split("."))
        if len(self.version) != 3:
            raise ValueError("version must be X.Y.Z")
        self.pin = str(state.get("pin", "123456")).encode()
        self.puk = str(state.get("puk", "12345678")).encode()
        self.pin_default = self.pin == b"123456"
        self.puk_default = self.puk == b"12345678"
        self.pin_max = int(state.get("pin_retries", 3))
        self.puk_max = int(state.get("puk_retries", 3))
        self.pin_left = self.pin_max
        self.puk_left = self.puk_max
        mgmt = state.get("management_key", DEFAULT_MGMT_KEY)
        self.mgmt_key = bytes.fromhex(mgmt)
        if len(self.mgmt_key) != 24:
            raise ValueError("management_key must be 24 bytes (3DES)")
        self.mgmt_default = mgmt.lower() == DEFAULT_MGMT_KEY
        touch = state.get("touch", {})
        self.touch_mode = touch.get("mode", "auto")
        self.touch_timeout = float(touch.get("timeout", 15))
        self.touch_auto_delay = float(touch.get("auto_delay", 0.1))
        self.touch_cache_seconds = float(touch.get("cache_seconds", 15))
        self.last_touch = None

        self.slots = {}
        for name, spec in state.get("slots", {}).items():
            slot_id = _parse_slot_id(name)
            if "private_key" in spec:
                pem = spec["private_key"].encode()
            elif "private_key_file" in spec:
                path = os.path.join(base_dir, spec["private_key_file"])
                with open(path, "rb") as f:
                    pem = f.read()
            else:
                raise ValueError("slot %s: no private_key" % name)
            key = serialization.load_pem_private_key(pem, password=None)
            self.slots[slot_id] = Slot(
                slot_id, spec.get("algorithm", "ECCP256"), key,
                spec.get("pin_policy",
                         DEFAULT_PIN_POLICY.get(slot_id, "once")),
                spec.get("touch_policy", "never"),
                spec.get("origin", "generated"),
                _load_certificate(spec.get("certificate")))

        # Data objects: object id (int) -> value (content of the 53 tag).
        self.objects = {}
        for oid, hexval in state.get("objects", {}).items():
            self.objects[int(oid, 16)] = bytes.fromhex(hexval)
        for slot in self.slots.values():
            if slot.certificate_der is not None:
                self.objects[SLOT_OBJECTS[slot.slot_id]] = (
                    tlv(0x70, slot.certificate_der) + tlv(0x71, b"\0") +
                    tlv(0xFE))

        for slot in self.slots.values():
            self._export_public_key(slot)
        self._reset_session()

    # -- session state -----------------------------------------------------

    def _reset_session(self):
        """Power-up / reset / re-SELECT: forget PIN, auth and buffers."""
        self.applet = None
        self.pin_verified = False
        self.pin_fresh = False        # for PIN policy "always"
        self.mgmt_authenticated = False
        self.mgmt_witness = None
        self.mgmt_challenge = None
        self.pending = b""            # GET RESPONSE remainder
        self.chain = None             # (ins, p1, p2, data) of CLA 0x10 chain

    # vicc SmartcardOS interface ------------------------------------------

    def getATR(self):
        return YUBIKEY5_ATR

    def powerUp(self):
        self._reset_session()

    def powerDown(self):
        self._reset_session()

    def reset(self):
        self._reset_session()

    def execute(self, msg):
        """Handle one command APDU, return response data + SW as bytes."""
        try:
            cla, ins, p1, p2, data, _le = parse_apdu(bytes(msg))
        except ValueError as e:
            log.info("bad APDU %s: %s", bytes(msg).hex(), e)
            return SW_WRONG_LENGTH.to_bytes(2, "big")
        log.debug(">> %s", bytes(msg).hex())

        if ins == 0xC0:                               # GET RESPONSE
            resp = self._next_chunk(self.pending)
        else:
            self.pending = b""
            try:
                resp = self._dispatch(cla, ins, p1, p2, data)
            except ApduError as e:
                if e.why:
                    log.info("%02X %02X %02X -> %04X (%s)", ins, p1, p2, e.sw,
                             e.why)
                resp = e.sw.to_bytes(2, "big")
            except Exception:  # an emulator bug must not kill the card
                log.exception("internal error on %s", bytes(msg).hex())
                resp = b"\x6f\x00"
        log.debug("<< %s", resp.hex())
        return resp

    def _next_chunk(self, data):
        """Return up to 256 bytes + 61xx (more) or 9000 (last piece)."""
        chunk, self.pending = data[:256], data[256:]
        if self.pending:
            return chunk + bytes([0x61, min(len(self.pending), 256) & 0xFF])
        return chunk + b"\x90\x00"

    def _dispatch(self, cla, ins, p1, p2, data):
        if cla & ~0x10 & 0xFF not in (0x00,):
            # Logical channels / secure messaging are not supported.
            raise ApduError(SW_CLA_NOT_SUPPORTED, "CLA %02X" % cla)
        # Command chaining: collect the pieces, execute on the last one.
        if cla & 0x10:
            if self.chain and self.chain[:3] != (ins, p1, p2):
                self.chain = None
            prev = self.chain[3] if self.chain else b""
            self.chain = (ins, p1, p2, prev + data)
            return b"\x90\x00"
        if self.chain:
            if self.chain[:3] == (ins, p1, p2):
                data = self.chain[3] + data
            self.chain = None

        if ins == 0xA4:
            return self._select(p1, p2, data)
        if self.applet == "piv":
            handler = self.PIV_COMMANDS.get(ins)
        elif self.applet == "mgmt":
            handler = self.MGMT_COMMANDS.get(ins)
        else:
            handler = None
        if handler is None:
            raise ApduError(SW_INS_NOT_SUPPORTED,
                            "INS %02X not implemented for applet %s"
                            % (ins, self.applet))
        return self._next_chunk(handler(self, p1, p2, data))

    # -- SELECT ------------------------------------------------------------

    def _select(self, p1, p2, data):
        if p1 != 0x04:
            raise ApduError(SW_WRONG_P1P2, "SELECT P1 %02X" % p1)
        # Partial selection: A0 00 00 03 08 (what the tools send) up to the
        # full PIV AID A0 00 00 03 08 00 00 10 00 01 00.
        if data[:5] == PIV_AID:
            self._reset_session()
            self.applet = "piv"
            return self._next_chunk(PIV_SELECT_RESPONSE)
        if data == MGMT_AID:
            self._reset_session()
            self.applet = "mgmt"
            text = "Virtual mgmt - FW version %d.%d.%d" % tuple(self.version)
            return self._next_chunk(text.encode())
        raise ApduError(SW_NOT_FOUND)  # quiet: tools probe many AIDs

    # -- management applet -------------------------------------------------

    def _mgmt_read_config(self, p1, p2, data):
        info = (tlv(0x01, CAPABILITY_PIV.to_bytes(2, "big")) +
                tlv(0x02, self.serial.to_bytes(4, "big")) +
                tlv(0x03, CAPABILITY_PIV.to_bytes(2, "big")) +
                tlv(0x04, bytes([FORM_FACTOR_USB_A_KEYCHAIN])) +
                tlv(0x05, self.version) +
                tlv(0x0A, b"\0"))
        return bytes([len(info)]) + info

    # -- PIV: Yubico extensions ----------------------------------------------

    def _get_version(self, p1, p2, data):
        return self.version

    def _get_serial(self, p1, p2, data):
        return self.serial.to_bytes(4, "big")

    def _get_metadata(self, p1, p2, data):
        if p2 == KEY_PIN:
            return (tlv(0x01, bytes([ALG_PIN_PUK])) +
                    tlv(0x05, bytes([self.pin_default])) +
                    tlv(0x06, bytes([self.pin_max, self.pin_left])))
        if p2 == KEY_PUK:
            return (tlv(0x01, bytes([ALG_PIN_PUK])) +
                    tlv(0x05, bytes([self.puk_default])) +
                    tlv(0x06, bytes([self.puk_max, self.puk_left])))
        if p2 == KEY_MGMT:
            return (tlv(0x01, bytes([ALG_3DES])) +
                    tlv(0x02, bytes([PIN_POLICIES["default"],
                                     TOUCH_POLICIES["never"]])) +
                    tlv(0x05, bytes([self.mgmt_default])))
        if p2 not in SLOT_OBJECTS and p2 != 0xF9:
            raise ApduError(SW_WRONG_P1P2, "metadata for unknown key %02X" % p2)
        slot = self.slots.get(p2)
        if slot is None:
            # A real YubiKey answers "reference data not found" for an
            # empty slot (ykman treats it as "no key").
            raise ApduError(SW_REF_NOT_FOUND, "slot %02X is empty" % p2)
        # Order matters for the yubikey crate: 01 (algorithm) before 04.
        return (tlv(0x01, bytes([slot.alg_id])) +
                tlv(0x02, bytes([PIN_POLICIES[slot.pin_policy],
                                 TOUCH_POLICIES[slot.touch_policy]])) +
                tlv(0x03, bytes([ORIGINS[slot.origin]])) +
                tlv(0x04, tlv(0x86, slot.public_point())))

    # -- PIV: PIN handling -------------------------------------------------

    @staticmethod
    def _unpad_pin(block):
        if len(block) != 8:
            raise ApduError(SW_INCORRECT_DATA, "PIN block must be 8 bytes")
        return block.rstrip(b"\xff")

    def _verify(self, p1, p2, data):
        if p2 != KEY_PIN:
            raise ApduError(SW_REF_NOT_FOUND, "VERIFY only for the PIN (80)")
        if p1 == 0xFF:                       # YubiKey: un-verify the PIN
            self.pin_verified = self.pin_fresh = False
            return b""
        if p1 != 0x00:
            raise ApduError(SW_WRONG_P1P2)
        if not data:                         # status query
            if self.pin_verified:
                return b""
            if self.pin_left == 0:
                raise ApduError(SW_AUTH_BLOCKED)
            raise ApduError(0x63C0 | self.pin_left)
        if self.pin_left == 0:
            raise ApduError(SW_AUTH_BLOCKED, "PIN blocked")
        if self._unpad_pin(data) != self.pin:
            self.pin_left -= 1
            self.pin_verified = self.pin_fresh = False
            log.info("wrong PIN, %d tries left", self.pin_left)
            if self.pin_left == 0:
                raise ApduError(SW_AUTH_BLOCKED)
            raise ApduError(0x63C0 | self.pin_left)
        self.pin_left = self.pin_max
        self.pin_verified = self.pin_fresh = True
        return b""

    def _change_reference(self, p1, p2, data):
        if p2 not in (KEY_PIN, KEY_PUK) or len(data) != 16:
            raise ApduError(SW_INCORRECT_DATA, "CHANGE REFERENCE data")
        old, new = self._unpad_pin(data[:8]), self._unpad_pin(data[8:])
        if p2 == KEY_PIN:
            if self.pin_left == 0:
                raise ApduError(SW_AUTH_BLOCKED)
            if old != self.pin:
                self.pin_left -= 1
                raise ApduError(0x63C0 | self.pin_left if self.pin_left
                                else SW_AUTH_BLOCKED)
            if len(new) < 6:
                raise ApduError(SW_INCORRECT_DATA, "PIN too short")
            self.pin, self.pin_left, self.pin_default = new, self.pin_max, \
                new == b"123456"
        else:
            if self.puk_left == 0:
                raise ApduError(SW_AUTH_BLOCKED)
            if old != self.puk:
                self.puk_left -= 1
                raise ApduError(0x63C0 | self.puk_left if self.puk_left
                                else SW_AUTH_BLOCKED)
            if len(new) < 6:
                raise ApduError(SW_INCORRECT_DATA, "PUK too short")
            self.puk, self.puk_left, self.puk_default = new, self.puk_max, \
                new == b"12345678"
        return b""

    def _reset_retry(self, p1, p2, data):
        """Unblock the PIN with the PUK: data = PUK(8) || new PIN(8)."""
        if p2 != KEY_PIN or len(data) != 16:
            raise ApduError(SW_INCORRECT_DATA, "RESET RETRY data")
        if self.puk_left == 0:
            raise ApduError(SW_AUTH_BLOCKED)
        puk, new = self._unpad_pin(data[:8]), self._unpad_pin(data[8:])
        if puk != self.puk:
            self.puk_left -= 1
            raise ApduError(0x63C0 | self.puk_left if self.puk_left
                            else SW_AUTH_BLOCKED)
        self.puk_left = self.puk_max
        self.pin, self.pin_left, self.pin_default = new, self.pin_max, \
            new == b"123456"
        return b""

    # -- PIV: data objects -------------------------------------------------

    @staticmethod
    def _object_id(data):
        try:
            tlvs = parse_tlvs(data)
        except ValueError:
            raise ApduError(SW_INCORRECT_DATA, "bad GET/PUT DATA TLV")
        if not tlvs or tlvs[0][0] != 0x5C:
            raise ApduError(SW_INCORRECT_DATA, "missing 5C tag")
        return int.from_bytes(tlvs[0][1], "big"), tlvs[1:]

    def _get_data(self, p1, p2, data):
        if (p1, p2) != (0x3F, 0xFF):
            raise ApduError(SW_WRONG_P1P2)
        oid, _ = self._object_id(data)
        if oid == 0x7E:
            return DISCOVERY_OBJECT
        value = self.objects.get(oid)
        if value is None:
            raise ApduError(SW_NOT_FOUND)  # quiet: tools probe every slot
        return tlv(0x53, value)

    def _put_data(self, p1, p2, data):
        if (p1, p2) != (0x3F, 0xFF):
            raise ApduError(SW_WRONG_P1P2)
        if not self.mgmt_authenticated:
            raise ApduError(SW_SECURITY_STATUS, "PUT DATA needs mgmt key")
        oid, rest = self._object_id(data)
        if not rest or rest[0][0] != 0x53:
            raise ApduError(SW_INCORRECT_DATA, "missing 53 tag")
        if rest[0][1]:
            self.objects[oid] = rest[0][1]
        else:
            self.objects.pop(oid, None)
        return b""

    # -- PIV: GENERAL AUTHENTICATE -------------------------------------------

    def _general_authenticate(self, p1, p2, data):
        try:
            outer = parse_tlvs(data)
            if len(outer) != 1 or outer[0][0] != 0x7C:
                raise ValueError("expected one 7C template")
            inner = dict(parse_tlvs(outer[0][1]))
        except ValueError as e:
            raise ApduError(SW_INCORRECT_DATA, "GENERAL AUTHENTICATE: %s" % e)
        if p2 == KEY_MGMT:
            return self._mgmt_authenticate(p1, inner)
        if p2 not in SLOT_OBJECTS:
            raise ApduError(SW_WRONG_P1P2, "no key reference %02X" % p2)
        slot = self.slots.get(p2)
        if slot is None:
            raise ApduError(SW_INCORRECT_DATA, "slot %02X is empty" % p2)
        if p1 != slot.alg_id:
            raise ApduError(SW_INCORRECT_DATA,
                            "algorithm %02X does not match slot %02X (%s)"
                            % (p1, p2, slot.algorithm))
        if 0x82 not in inner or inner[0x82]:
            raise ApduError(SW_INCORRECT_DATA, "no empty 82 response tag")
        if 0x81 in inner:
            op, payload = "sign", inner[0x81]
        elif 0x85 in inner:
            op, payload = "ecdh", inner[0x85]
        else:
            raise ApduError(SW_INCORRECT_DATA, "neither 81 nor 85 given")
        return self._private_key_operation(slot, op, payload)

    def _private_key_operation(self, slot, op, payload):
        event = {"time": time.time(), "slot": "%02x" % slot.slot_id,
                 "op": op, "algorithm": slot.algorithm,
                 "input": payload.hex(), "touched": False}
        try:
            # PIN policy first: a real key does not ask for a touch when
            # the PIN is missing.
            if slot.pin_policy == "once" and not self.pin_verified:
                raise ApduError(SW_SECURITY_STATUS, "PIN required")
            if slot.pin_policy == "always" and not self.pin_fresh:
                raise ApduError(SW_SECURITY_STATUS, "PIN required (always)")
            # A PIN "always" verification is used up by the attempt.
            if slot.pin_policy == "always":
                self.pin_fresh = False
            if op == "sign" and len(payload) > slot.key_size:
                raise ApduError(SW_INCORRECT_DATA, "digest longer than key")
            if op == "ecdh" and len(payload) != 2 * slot.key_size + 1:
                raise ApduError(SW_INCORRECT_DATA, "bad ECDH point length")
            self._require_touch(slot, event)
            if op == "sign":
                result = slot.sign_digest(payload)
            else:
                result = slot.ecdh(payload)
        except ApduError as e:
            event["result"] = {SW_SECURITY_STATUS: "pin-required"}.get(
                e.sw, "error-%04x" % e.sw)
            if e.why == "touch timeout":
                event["result"] = "touch-timeout"
            self._record_event(event)
            raise
        event["result"] = "ok"
        self._record_event(event)
        self._bump_counter("sign-count")
        log.info("%s with slot %02x ok (touched=%s)", op, slot.slot_id,
                 event["touched"])
        return tlv(0x7C, tlv(0x82, result))

    # -- touch emulation ---------------------------------------------------

    def _read_override(self, name):
        try:
            with open(os.path.join(self.state_dir, name)) as f:
                return f.read().strip()
        except OSError:
            return None

    def _require_touch(self, slot, event):
        if slot.touch_policy == "never":
            return
        now = time.monotonic()
        if (slot.touch_policy == "cached" and self.last_touch is not None and
                now - self.last_touch < self.touch_cache_seconds):
            event["touched"] = "cached"
            return
        mode = self._read_override("touch-mode") or self.touch_mode
        timeout = self.touch_timeout
        override = self._read_override("touch-timeout")
        if override:
            timeout = float(override)
        touch_file = os.path.join(self.state_dir, "touch")
        pending = os.path.join(self.state_dir, "touch-pending")
        _write_atomic(pending, "%02x\n" % slot.slot_id)
        log.info("slot %02x waits for a touch (mode %s, %.1fs)",
                 slot.slot_id, mode, timeout)
        touched = False
        try:
            deadline = now + timeout
            if mode == "auto":
                time.sleep(min(self.touch_auto_delay, timeout))
                touched = True
            elif mode == "file":
                while True:
                    try:
                        os.unlink(touch_file)
                        touched = True
                        break
                    except FileNotFoundError:
                        pass
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(0.05)
            elif mode == "never":
                time.sleep(max(0.0, timeout))
            else:
                log.warning("unknown touch mode %r: nobody touches", mode)
                time.sleep(max(0.0, timeout))
        finally:
            try:
                os.unlink(pending)
            except FileNotFoundError:
                pass
        if not touched:
            raise ApduError(SW_SECURITY_STATUS, "touch timeout")
        self.last_touch = time.monotonic()
        event["touched"] = True
        self._bump_counter("touch-count")

    # -- management key authentication ---------------------------------------

    def _3des(self, block, encrypt):
        cipher = Cipher(TripleDES(self.mgmt_key), modes.ECB())
        ctx = cipher.encryptor() if encrypt else cipher.decryptor()
        return ctx.update(block) + ctx.finalize()

    def _mgmt_authenticate(self, p1, inner):
        """3DES management key authentication (SP 800-73 + Yubico usage).

        Mutual: 7C{80 00} -> 7C{80 E(w)};  7C{80 w, 81 c} -> 7C{82 E(c)}
        Single: 7C{81 00} -> 7C{81 c};     7C{82 E(c)}    -> 9000
        """
        if p1 != ALG_3DES:
            raise ApduError(SW_INCORRECT_DATA, "mgmt key is 3DES (03)")
        if inner.get(0x80) == b"":                       # witness request
            self.mgmt_witness = secrets.token_bytes(8)
            self.mgmt_authenticated = False
            return tlv(0x7C, tlv(0x80, self._3des(self.mgmt_witness, True)))
        if 0x80 in inner and 0x81 in inner:              # witness + challenge
            witness, self.mgmt_witness = self.mgmt_witness, None
            if witness is None or inner[0x80] != witness or \
                    len(inner[0x81]) != 8:
                raise ApduError(SW_SECURITY_STATUS, "bad mgmt witness")
            self.mgmt_authenticated = True
            return tlv(0x7C, tlv(0x82, self._3des(inner[0x81], True)))
        if inner.get(0x81) == b"":                       # challenge request
            self.mgmt_challenge = secrets.token_bytes(8)
            self.mgmt_authenticated = False
            return tlv(0x7C, tlv(0x81, self.mgmt_challenge))
        if 0x82 in inner and self.mgmt_challenge is not None:
            challenge, self.mgmt_challenge = self.mgmt_challenge, None
            if inner[0x82] != self._3des(challenge, True):
                raise ApduError(SW_SECURITY_STATUS, "bad mgmt response")
            self.mgmt_authenticated = True
            return b""
        raise ApduError(SW_INCORRECT_DATA, "unexpected mgmt auth template")

    # -- key generation / import (in memory) ------------------------------------

    def _key_write_allowed(self, p2):
        if not self.mgmt_authenticated:
            raise ApduError(SW_SECURITY_STATUS, "needs mgmt key")
        if p2 not in SLOT_OBJECTS:
            raise ApduError(SW_WRONG_P1P2, "no key slot %02X" % p2)

    @staticmethod
    def _policies(tags, slot_id):
        pin = {v: k for k, v in PIN_POLICIES.items()}.get(
            tags.get(0xAA, b"\0")[0], "default")
        touch = {v: k for k, v in TOUCH_POLICIES.items()}.get(
            tags.get(0xAB, b"\0")[0], "default")
        if pin == "default":
            pin = DEFAULT_PIN_POLICY.get(slot_id, "once")
        if touch == "default":
            touch = "never"
        return pin, touch

    def _generate(self, p1, p2, data):
        self._key_write_allowed(p2)
        try:
            outer = dict(parse_tlvs(data))
            tags = dict(parse_tlvs(outer[0xAC]))
            alg_id = tags[0x80][0]
        except (ValueError, KeyError, IndexError):
            raise ApduError(SW_INCORRECT_DATA, "bad GENERATE template")
        if alg_id not in ALG_BY_ID:
            raise ApduError(SW_INCORRECT_DATA, "algorithm %02X unsupported"
                            % alg_id)
        algorithm = ALG_BY_ID[alg_id]
        pin, touch = self._policies(tags, p2)
        key = ec.generate_private_key(ALGORITHMS[algorithm][1]())
        old = self.slots.get(p2)
        self.slots[p2] = Slot(p2, algorithm, key, pin, touch, "generated",
                              old.certificate_der if old else None)
        self._export_public_key(self.slots[p2])
        return tlv(0x7F49, tlv(0x86, self.slots[p2].public_point()))

    def _import_key(self, p1, p2, data):
        self._key_write_allowed(p2)
        if p1 not in ALG_BY_ID:
            raise ApduError(SW_INCORRECT_DATA, "only EC keys can be imported")
        algorithm = ALG_BY_ID[p1]
        try:
            tags = dict(parse_tlvs(data))
            scalar = int.from_bytes(tags[0x06], "big")
            key = ec.derive_private_key(scalar, ALGORITHMS[algorithm][1]())
        except (ValueError, KeyError):
            raise ApduError(SW_INCORRECT_DATA, "bad IMPORT data")
        pin, touch = self._policies(tags, p2)
        old = self.slots.get(p2)
        self.slots[p2] = Slot(p2, algorithm, key, pin, touch, "imported",
                              old.certificate_der if old else None)
        self._export_public_key(self.slots[p2])
        return b""

    # -- state-dir files ---------------------------------------------------

    def _export_public_key(self, slot):
        _write_atomic(os.path.join(self.state_dir,
                                   "pubkey-%02x.pem" % slot.slot_id),
                      slot.public_pem().decode())

    def _bump_counter(self, name):
        path = os.path.join(self.state_dir, name)
        count = int(self._read_override(name) or 0) + 1
        _write_atomic(path, "%d\n" % count)

    def _record_event(self, event):
        with open(os.path.join(self.state_dir, "events.jsonl"), "a") as f:
            f.write(json.dumps(event, sort_keys=True) + "\n")

    PIV_COMMANDS = {
        0xFD: _get_version,
        0xF8: _get_serial,
        0xF7: _get_metadata,
        0x20: _verify,
        0x24: _change_reference,
        0x2C: _reset_retry,
        0xCB: _get_data,
        0xDB: _put_data,
        0x87: _general_authenticate,
        0x47: _generate,
        0xFE: _import_key,
    }
    MGMT_COMMANDS = {
        0x1D: _mgmt_read_config,
    }


def _write_atomic(path, text):
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def make_os(state, state_dir, base_dir):
    """The card as a vicc ``SmartcardOS`` subclass instance."""
    cls = type("YubiKeyPivOS", (YubiKeyPiv, _smartcard_os_base()), {})
    return cls(state, state_dir, base_dir)


# ---------------------------------------------------------------------------
# make-state: keys and self-signed certificates
# ---------------------------------------------------------------------------

def _selfsigned_cert_der(key, common_name):
    """Self-signed X.509 (DER) over ``key``'s public key.

    Uses python-cryptography; falls back to the openssl CLI if the x509
    builder is unavailable.
    """
    try:
        builder = x509.CertificateBuilder
    except AttributeError:  # pragma: no cover
        builder = None
    if builder is not None:
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME,
                                             common_name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        hash_alg = hashes.SHA384() if key.curve.key_size > 256 else \
            hashes.SHA256()
        cert = (builder().subject_name(name).issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .sign(key, hash_alg))
        return cert.public_bytes(serialization.Encoding.DER)
    return _selfsigned_cert_der_openssl(key, common_name)


def _selfsigned_cert_der_openssl(key, common_name):
    with tempfile.TemporaryDirectory() as d:
        key_path = os.path.join(d, "key.pem")
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        return subprocess.run(
            ["openssl", "req", "-new", "-x509", "-key", key_path,
             "-subj", "/CN=%s" % common_name, "-days", "3650",
             "-outform", "DER"],
            check=True, stdout=subprocess.PIPE).stdout


def make_state(args):
    slots = {}
    for spec in args.slot:
        parts = spec.split(":")
        if len(parts) not in (4, 5) or (len(parts) == 5 and
                                        parts[4] != "cert"):
            raise SystemExit("--slot wants SLOT:ALG:PIN_POLICY:TOUCH_POLICY"
                             "[:cert], got %r" % spec)
        slot_id = _parse_slot_id(parts[0])
        algorithm = parts[1].upper()
        if algorithm not in ALGORITHMS:
            raise SystemExit("unsupported algorithm %r" % parts[1])
        pin_policy = parts[2] if parts[2] != "default" else \
            DEFAULT_PIN_POLICY.get(slot_id, "once")
        touch_policy = parts[3] if parts[3] != "default" else "never"
        key = ec.generate_private_key(ALGORITHMS[algorithm][1]())
        entry = {
            "algorithm": algorithm,
            "pin_policy": pin_policy,
            "touch_policy": touch_policy,
            "origin": "generated",
            "private_key": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()).decode(),
        }
        if len(parts) == 5:
            der = _selfsigned_cert_der(key, "virtual-piv slot %02x" % slot_id)
            entry["certificate"] = x509.load_der_x509_certificate(
                der).public_bytes(serialization.Encoding.PEM).decode()
        slots["%02x" % slot_id] = entry
    state = {
        "serial": args.serial,
        "version": args.version,
        "pin": args.pin,
        "puk": "12345678",
        "pin_retries": 3,
        "puk_retries": 3,
        "management_key": DEFAULT_MGMT_KEY,
        "touch": {"mode": args.touch_mode, "timeout": args.touch_timeout,
                  "auto_delay": 0.1, "cache_seconds": 15},
        "slots": slots,
        "objects": {},
    }
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2)
        f.write("\n")


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def run(args):
    with open(args.state) as f:
        state = json.load(f)
    base_dir = os.path.dirname(os.path.abspath(args.state))
    state_dir = os.path.abspath(args.state_dir or base_dir)
    os.makedirs(state_dir, exist_ok=True)
    card = make_os(state, state_dir, base_dir)
    from virtualsmartcard.VirtualSmartcard import VirtualICC
    # vicc logs every APDU at INFO on the root logger; keep that for -vv.
    vicc_level = logging.INFO if args.verbose >= 2 else logging.WARNING
    vicc = VirtualICC(None, "iso7816", args.host, args.port,
                      logginglevel=vicc_level)
    logging.getLogger().setLevel(vicc_level)
    vicc.os = card
    log.info("virtual YubiKey %s serial %d attached to vpcd %s:%d, slots %s",
             ".".join(map(str, card.version)), card.serial, args.host,
             args.port, " ".join("%02x" % s for s in sorted(card.slots)))
    vicc.run()


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Virtual YubiKey 5 PIV applet for vsmartcard vicc/vpcd")
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="attach the card to vpcd")
    p_run.add_argument("state", help="JSON state file")
    p_run.add_argument("--state-dir", help="touch/counter files (default: "
                       "directory of the state file)")
    p_run.add_argument("--host", default="localhost")
    p_run.add_argument("--port", type=int, default=35963)
    p_run.add_argument("-v", "--verbose", action="count", default=0,
                       help="-v: operations, -vv: every APDU")

    p_make = sub.add_parser("make-state", help="write a state file with "
                            "fresh keys")
    p_make.add_argument("--out", required=True)
    p_make.add_argument("--serial", type=int, default=12345678)
    p_make.add_argument("--version", default="5.4.3")
    p_make.add_argument("--pin", default="123456")
    p_make.add_argument("--touch-mode", default="auto",
                        choices=["auto", "file", "never"])
    p_make.add_argument("--touch-timeout", type=float, default=15.0)
    p_make.add_argument("--slot", action="append", default=[],
                        help="SLOT:ALG:PIN_POLICY:TOUCH_POLICY[:cert], e.g. "
                        "9e:ECCP256:never:always:cert")
    args = parser.parse_args(argv)

    level = logging.WARNING
    if getattr(args, "verbose", 0) >= 2:
        level = logging.DEBUG
    elif getattr(args, "verbose", 0) == 1:
        level = logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s virtual_piv %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False

    if args.command == "run":
        run(args)
    else:
        make_state(args)


if __name__ == "__main__":
    main()
