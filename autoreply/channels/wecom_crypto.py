"""WeCom (企业微信) callback crypto, written from the documented scheme with ``cryptography``.

Signature: sha1 hex of ``"".join(sorted([token, timestamp, nonce, encrypted]))``.
Encryption: key = base64decode(EncodingAESKey + "="), AES-256-CBC with IV = key[:16], PKCS#7
padding to 32-byte blocks; plaintext = 16 random bytes + 4-byte big-endian message length +
message + receive id (the corp id for a self-built app, checked on decrypt).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from autoreply.channels.base import ChannelError, same

BLOCK = 32


class WeComCryptoError(ChannelError):
    """A WeCom payload cannot be decrypted, or was encrypted for another corp."""


class WeComCrypto:
    """Signatures and AES for WeCom callbacks (企业微信 加解密方案)."""

    def __init__(self, *, token: str, encoding_aes_key: str, receive_id: str) -> None:
        try:
            key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except binascii.Error:
            key = b""
        if len(encoding_aes_key) != 43 or len(key) != 32:
            raise ChannelError(
                "wecom: encoding_aes_key must be the 43-character EncodingAESKey from the "
                "WeCom admin console (AUTOREPLY_CHANNELS__WECOM__ENCODING_AES_KEY)"
            )
        self.token = token
        self.key = key
        self.receive_id = receive_id

    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        """sha1 hex of the sorted, concatenated token, timestamp, nonce and payload."""
        joined = "".join(sorted([self.token, timestamp, nonce, encrypted]))
        return hashlib.sha1(joined.encode()).hexdigest()

    def verify(self, signature: str | None, timestamp: str, nonce: str, encrypted: str) -> bool:
        return same(signature, self.signature(timestamp, nonce, encrypted))

    def encrypt(self, text: str, *, prefix: bytes | None = None) -> str:
        """Base64 ciphertext of ``text``; ``prefix`` (16 bytes) replaces the random one in tests."""
        prefix = os.urandom(16) if prefix is None else prefix
        if len(prefix) != 16:
            raise ValueError("prefix must be 16 bytes")
        msg = text.encode()
        plain = prefix + struct.pack(">I", len(msg)) + msg + self.receive_id.encode()
        pad = BLOCK - len(plain) % BLOCK
        plain += bytes([pad]) * pad
        encryptor = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()

    def decrypt(self, encrypted: str) -> str:
        """The message inside ``encrypted``; ``WeComCryptoError`` if it is not one for us."""
        try:
            raw = base64.b64decode(encrypted, validate=True)
        except binascii.Error:
            raise WeComCryptoError("wecom: payload is not base64") from None
        if not raw or len(raw) % 16:
            raise WeComCryptoError("wecom: payload is not a whole number of AES blocks")
        decryptor = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).decryptor()
        plain = decryptor.update(raw) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or len(plain) - pad < 20:
            raise WeComCryptoError("wecom: bad padding (wrong EncodingAESKey?)")
        content = plain[:-pad]
        (length,) = struct.unpack(">I", content[16:20])
        msg, receive_id = content[20 : 20 + length], content[20 + length :]
        if len(msg) != length:
            raise WeComCryptoError("wecom: length field exceeds the payload")
        if not same(receive_id.decode("utf-8", "replace"), self.receive_id):
            raise WeComCryptoError("wecom: payload was encrypted for another receive id")
        try:
            return msg.decode()
        except UnicodeDecodeError:
            raise WeComCryptoError("wecom: message is not UTF-8") from None
