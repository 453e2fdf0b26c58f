"""WeChat callback security: the SHA-1 signatures and the AES-256-CBC message encryption (安全模式 / 兼容模式).

Written against the published protocol (not against wechatpy, which the tests use as the independent peer):

- ``signature = sha1("".join(sorted([token, timestamp, nonce])))`` on every callback;
- ``msg_signature = sha1("".join(sorted([token, timestamp, nonce, Encrypt])))`` on encrypted ones;
- AES key = base64decode(EncodingAESKey + "="), 32 bytes; IV = key[:16]; PKCS#7 padding to 32-byte blocks;
- plaintext = 16 random bytes + 4-byte big-endian length + message (UTF-8) + AppID.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # WeChat pads to 32 bytes (not AES's 16)


class CryptoError(ValueError):
    """The encrypted payload cannot be decrypted (bad base64, bad padding, truncated)."""


class AppIdMismatch(ValueError):
    """The decrypted message was encrypted for another AppID."""


def sign(*parts: str) -> str:
    """WeChat's signature: SHA-1 over the sorted, concatenated parts."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def check(expected: str | None, *parts: str) -> bool:
    """Constant-time check of a signature sent by WeChat."""
    if not expected:
        return False
    return hmac.compare_digest(sign(*parts).encode("ascii"), expected.strip().lower().encode("ascii", "replace"))


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte key from the 43-character EncodingAESKey; ValueError if it is not one."""
    if len(encoding_aes_key) != 43:
        raise ValueError("EncodingAESKey must be 43 characters / EncodingAESKey 应为 43 个字符")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as exc:
        raise ValueError(f"EncodingAESKey is not base64: {exc}") from exc
    if len(key) != 32:
        raise ValueError("EncodingAESKey must decode to 32 bytes")
    return key


class MessageCrypto:
    """Encrypts replies and decrypts callbacks for one 公众号 (key from EncodingAESKey, bound to its AppID)."""

    def __init__(self, encoding_aes_key: str, appid: str) -> None:
        self.key = aes_key(encoding_aes_key)
        self.appid = appid

    def _cipher(self) -> Cipher:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16]))

    def encrypt(self, text: str, random16: bytes | None = None) -> str:
        body = text.encode("utf-8")
        raw = (random16 or os.urandom(16)) + struct.pack(">I", len(body)) + body + self.appid.encode("utf-8")
        pad = BLOCK - len(raw) % BLOCK
        raw += bytes([pad]) * pad
        enc = self._cipher().encryptor()
        return base64.b64encode(enc.update(raw) + enc.finalize()).decode("ascii")

    def decrypt(self, encrypted: str) -> str:
        """The message inside ``encrypted``; CryptoError if it is damaged, AppIdMismatch if not for our AppID."""
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CryptoError("Encrypt is not base64") from exc
        if not data or len(data) % 16:
            raise CryptoError("Encrypt has a bad length")
        dec = self._cipher().decryptor()
        raw = dec.update(data) + dec.finalize()
        pad = raw[-1]
        if not 1 <= pad <= BLOCK or raw[-pad:] != bytes([pad]) * pad:
            raise CryptoError("bad padding (wrong EncodingAESKey?)")
        raw = raw[:-pad]
        if len(raw) < 20:
            raise CryptoError("decrypted payload too short")
        (length,) = struct.unpack(">I", raw[16:20])
        if 20 + length > len(raw):
            raise CryptoError("decrypted length field out of range")
        body, from_appid = raw[20 : 20 + length], raw[20 + length :]
        try:
            text = body.decode("utf-8")
            appid = from_appid.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CryptoError("decrypted payload is not UTF-8") from exc
        if not hmac.compare_digest(appid.encode("utf-8"), self.appid.encode("utf-8")):
            raise AppIdMismatch(appid)
        return text
