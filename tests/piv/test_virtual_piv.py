#!/usr/bin/python3
"""APDU-level unit tests of virtual_piv.py (no pcscd/vicc needed).

Run: /usr/bin/python3 -m unittest tests/piv/test_virtual_piv.py -v
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile
import unittest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.ciphers import Cipher, modes

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import virtual_piv as v  # noqa: E402


class Card:
    """Drives a YubiKeyPiv directly with command APDUs."""

    def __init__(self, state, state_dir):
        self.c = v.YubiKeyPiv(state, state_dir, state_dir)

    def send(self, cla, ins, p1, p2, data=b""):
        apdu = bytes([cla, ins, p1, p2])
        if data:
            apdu += bytes([len(data)]) + data
        r = self.c.execute(apdu)
        return r[:-2], int.from_bytes(r[-2:], "big")

    def call(self, ins, p1, p2, data=b""):
        """Like a host library: chains long input, follows 61xx."""
        while len(data) > 255:
            _, sw = self.send(0x10, ins, p1, p2, data[:255])
            assert sw == 0x9000, hex(sw)
            data = data[255:]
        out, sw = self.send(0, ins, p1, p2, data)
        while sw >> 8 == 0x61:
            more, sw = self.send(0, 0xC0, 0, 0)
            out += more
        return out, sw

    def select(self):
        return self.call(0xA4, 4, 0, v.PIV_AID)

    def sign(self, slot, alg, digest):
        body = v.tlv(0x7C, v.tlv(0x82) + v.tlv(0x81, digest))
        out, sw = self.call(0x87, alg, slot, body)
        if sw != 0x9000:
            return None, sw
        outer = dict(v.parse_tlvs(out))
        return dict(v.parse_tlvs(outer[0x7C]))[0x82], sw


class VirtualPivTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vpiv-test-")
        path = os.path.join(self.dir, "state.json")
        v.main(["make-state", "--out", path, "--touch-mode", "auto",
                "--slot", "9e:ECCP256:never:always:cert",
                "--slot", "9c:ECCP256:default:never",
                "--slot", "9d:ECCP384:once:cached"])
        with open(path) as f:
            self.state = json.load(f)
        self.card = Card(self.state, self.dir)
        _, sw = self.card.select()
        self.assertEqual(sw, 0x9000)

    def tearDown(self):
        shutil.rmtree(self.dir)

    def pub(self, slot):
        with open(os.path.join(self.dir, "pubkey-%s.pem" % slot), "rb") as f:
            return serialization.load_pem_public_key(f.read())

    def read(self, name):
        with open(os.path.join(self.dir, name)) as f:
            return f.read().strip()

    def test_version_serial(self):
        self.assertEqual(self.card.call(0xFD, 0, 0), (b"\x05\x04\x03", 0x9000))
        out, sw = self.card.call(0xF8, 0, 0)
        self.assertEqual(int.from_bytes(out, "big"), 12345678)

    def test_metadata(self):
        out, sw = self.card.call(0xF7, 0, 0x9E)
        self.assertEqual(sw, 0x9000)
        tags = v.parse_tlvs(out)
        self.assertEqual([t for t, _ in tags], [1, 2, 3, 4])
        d = dict(tags)
        self.assertEqual(d[1], b"\x11")
        self.assertEqual(d[2], b"\x01\x02")        # PIN never, touch always
        self.assertEqual(d[3], b"\x01")            # generated
        point = dict(v.parse_tlvs(d[4]))[0x86]
        self.assertEqual(point, self.pub("9e").public_bytes(
            serialization.Encoding.X962,
            serialization.PublicFormat.UncompressedPoint))
        self.assertEqual(dict(v.parse_tlvs(self.card.call(0xF7, 0, 0x9C)[0]))
                         [2], b"\x03\x01")         # 9c default PIN = always
        self.assertEqual(self.card.call(0xF7, 0, 0x9A), (b"", 0x6A88))
        pin = dict(v.parse_tlvs(self.card.call(0xF7, 0, 0x80)[0]))
        self.assertEqual((pin[1], pin[5], pin[6]), (b"\xff", b"\x01",
                                                    b"\x03\x03"))

    def test_sign_p256_touch(self):
        digest = hashlib.sha256(b"message").digest()
        sig, sw = self.card.sign(0x9E, 0x11, digest)
        self.assertEqual(sw, 0x9000)
        self.pub("9e").verify(sig, b"message", ec.ECDSA(hashes.SHA256()))
        self.assertEqual(self.read("sign-count"), "1")
        self.assertEqual(self.read("touch-count"), "1")
        # wrong algorithm byte, too long input
        self.assertEqual(self.card.sign(0x9E, 0x14, digest)[1], 0x6A80)
        self.assertEqual(self.card.sign(0x9E, 0x11, digest + b"x")[1], 0x6A80)
        # shorter input = left-padded integer
        sig, sw = self.card.sign(0x9E, 0x11, digest[:20])
        self.pub("9e").verify(sig, b"\0" * 12 + digest[:20],
                              ec.ECDSA(utils.Prehashed(hashes.SHA256())))

    def test_pin_policies_and_p384_cached_touch(self):
        d384 = hashlib.sha384(b"m").digest()
        self.assertEqual(self.card.sign(0x9D, 0x14, d384)[1], 0x6982)
        self.assertEqual(self.card.call(0x20, 0, 0x80), (b"", 0x63C3))
        self.assertEqual(self.card.call(0x20, 0, 0x80, b"000000\xff\xff")[1],
                         0x63C2)
        self.assertEqual(self.card.call(0x20, 0, 0x80, b"123456\xff\xff")[1],
                         0x9000)
        self.assertEqual(self.card.call(0x20, 0, 0x80), (b"", 0x9000))
        for _ in range(2):  # PIN once; second touch comes from the cache
            sig, sw = self.card.sign(0x9D, 0x14, d384)
            self.assertEqual(sw, 0x9000)
            self.pub("9d").verify(sig, b"m", ec.ECDSA(hashes.SHA384()))
        self.assertEqual(self.read("touch-count"), "1")
        # PIN always (9c): one signature per VERIFY (operations on slots
        # with other PIN policies do not use the verification up)
        d = hashlib.sha256(b"x").digest()
        self.assertEqual(self.card.sign(0x9C, 0x11, d)[1], 0x9000)
        self.assertEqual(self.card.sign(0x9C, 0x11, d)[1], 0x6982)
        self.card.call(0x20, 0, 0x80, b"123456\xff\xff")
        self.assertEqual(self.card.sign(0x9C, 0x11, d)[1], 0x9000)
        self.assertEqual(self.card.sign(0x9C, 0x11, d)[1], 0x6982)
        # re-SELECT forgets the PIN
        self.card.select()
        self.assertEqual(self.card.call(0x20, 0, 0x80), (b"", 0x63C3))

    def test_touch_timeout(self):
        with open(os.path.join(self.dir, "touch-mode"), "w") as f:
            f.write("never\n")
        with open(os.path.join(self.dir, "touch-timeout"), "w") as f:
            f.write("0.2\n")
        self.assertEqual(self.card.sign(0x9E, 0x11, b"\1" * 32)[1], 0x6982)
        with open(os.path.join(self.dir, "events.jsonl")) as f:
            self.assertEqual(json.loads(f.readlines()[-1])["result"],
                             "touch-timeout")
        with open(os.path.join(self.dir, "touch-mode"), "w") as f:
            f.write("file\n")
        open(os.path.join(self.dir, "touch"), "w").close()  # pre-touched
        self.assertEqual(self.card.sign(0x9E, 0x11, b"\1" * 32)[1], 0x9000)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "touch")))
        self.assertEqual(self.card.sign(0x9E, 0x11, b"\1" * 32)[1], 0x6982)

    def test_certificate_object_and_get_response(self):
        out, sw = self.card.call(0xCB, 0x3F, 0xFF, bytes.fromhex("5C035FC101"))
        self.assertEqual(sw, 0x9000)
        self.assertGreater(len(out), 256)          # came in 61xx pieces
        (tag, value), = v.parse_tlvs(out)
        self.assertEqual(tag, 0x53)
        obj = dict(v.parse_tlvs(value))
        cert = x509.load_der_x509_certificate(obj[0x70])
        self.assertEqual(cert.public_key().public_numbers(),
                         self.pub("9e").public_numbers())
        self.assertEqual(obj[0x71], b"\0")
        self.assertEqual(self.card.call(0xCB, 0x3F, 0xFF,
                                        bytes.fromhex("5C035FC10A"))[1],
                         0x6A82)
        # extended-length encoding (ykman)
        r = self.card.c.execute(bytes.fromhex("00CB3FFF0000055C035FC101"))
        self.assertEqual(r[-2], 0x61)

    def test_mgmt_auth_chaining_put_generate_ecdh(self):
        key = bytes.fromhex(v.DEFAULT_MGMT_KEY)

        def des(block, enc):
            c = Cipher(v.TripleDES(key), modes.ECB())
            c = c.encryptor() if enc else c.decryptor()
            return c.update(block) + c.finalize()

        put = v.tlv(0x5C, bytes.fromhex("5FC102")) + v.tlv(0x53, b"\xaa" * 300)
        self.assertEqual(self.card.call(0xDB, 0x3F, 0xFF, put)[1], 0x6982)
        out, _ = self.card.call(0x87, 3, 0x9B, bytes.fromhex("7C028000"))
        witness = des(out[4:12], False)
        chal = b"\x11" * 8
        out, sw = self.card.call(0x87, 3, 0x9B, v.tlv(0x7C, v.tlv(
            0x80, witness) + v.tlv(0x81, chal)))
        self.assertEqual(sw, 0x9000)
        self.assertEqual(out[4:12], des(chal, True))
        self.assertEqual(self.card.call(0xDB, 0x3F, 0xFF, put)[1], 0x9000)
        out, _ = self.card.call(0xCB, 0x3F, 0xFF, bytes.fromhex("5C035FC102"))
        self.assertEqual(out, v.tlv(0x53, b"\xaa" * 300))
        # generate an ECCP256 key in 9a with touch never, then ECDH with it
        out, sw = self.card.call(0x47, 0, 0x9A, bytes.fromhex(
            "AC0980011 1AA0101AB0101".replace(" ", "")))
        self.assertEqual(sw, 0x9000)
        point = dict(v.parse_tlvs(dict(v.parse_tlvs(out))[0x7F49]))[0x86]
        peer = ec.generate_private_key(ec.SECP256R1())
        peer_point = peer.public_key().public_bytes(
            serialization.Encoding.X962,
            serialization.PublicFormat.UncompressedPoint)
        out, sw = self.card.call(0x87, 0x11, 0x9A, v.tlv(0x7C, v.tlv(0x82) +
                                                         v.tlv(0x85,
                                                               peer_point)))
        self.assertEqual(sw, 0x9000)
        shared = dict(v.parse_tlvs(dict(v.parse_tlvs(out))[0x7C]))[0x82]
        card_pub = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), point)
        self.assertEqual(shared, peer.exchange(ec.ECDH(), card_pub))

    def test_management_applet(self):
        out, sw = self.card.call(0xA4, 4, 0, v.MGMT_AID)
        self.assertIn(b"5.4.3", out)
        out, sw = self.card.call(0x1D, 0, 0)
        info = dict(v.parse_tlvs(out[1:]))
        self.assertEqual(int.from_bytes(info[2], "big"), 12345678)
        self.assertEqual(self.card.call(0xA4, 4, 0, b"\xa0\x00\x00\x06")[1],
                         0x6A82)

    def test_openssl_certificate_fallback(self):
        key = ec.generate_private_key(ec.SECP256R1())
        der = v._selfsigned_cert_der_openssl(key, "fallback")
        cert = x509.load_der_x509_certificate(der)
        self.assertEqual(cert.public_key().public_numbers(),
                         key.public_key().public_numbers())


if __name__ == "__main__":
    unittest.main()
