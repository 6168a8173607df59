"""A judge reply's body, decoded with a cap on what it may take in memory.

A judge_error is the worst a hostile or broken server may cause: never a verifying process
grown by a decompression bomb.
"""

from __future__ import annotations

import zlib

import httpx

# A grading reply is a few bytes of JSON ("A" plus the OpenAI envelope) and a model list a few
# KB, so 1 MiB of *decoded* body is generous. Beyond it the reply is abandoned as a judge_error:
# a gzip bomb (100 KB on the wire, 100 MB decoded) grew the verifying process by 892 MB when the
# whole body was read before anything looked at it.
MAX_REPLY_BYTES = 1 << 20


class BodyRefused(Exception):
    """The body is over the cap or in a coding this client did not offer."""


class BoundedBody:
    """Decodes a body chunk by chunk and refuses to hold more than ``cap`` decoded bytes.

    httpx's own decoders inflate each 64 KiB network chunk whole (up to ~64 MB for a gzip bomb,
    per request in flight), so the raw bytes are inflated here with zlib's ``max_length``
    instead: memory stays within ``cap`` whatever the compression ratio. The codings are httpx's
    (gzip, deflate, identity; the client's Accept-Encoding offers only gzip and deflate).
    """

    def __init__(self, content_encoding: str, cap: int = MAX_REPLY_BYTES) -> None:
        self.cap = cap
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise BodyRefused(f"malformed response: unsupported Content-Encoding {content_encoding[:200]!r}")
        self.coding = codings[0] if codings else None
        self._inflate = self._new_inflater()
        self._first = True  # deflate: zlib-wrapped per RFC 9110, raw as some servers send it
        self.data = bytearray()

    def _new_inflater(self, raw_deflate: bool = False) -> zlib._Decompress | None:
        if self.coding is None:
            return None
        if self.coding == "deflate":
            return zlib.decompressobj(-zlib.MAX_WBITS if raw_deflate else zlib.MAX_WBITS)
        return zlib.decompressobj(zlib.MAX_WBITS | 16)

    def _keep(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.cap:
            raise BodyRefused(f"reply larger than {self.cap} bytes (MAX_REPLY_BYTES); abandoned")

    def feed(self, raw: bytes) -> None:
        if self._inflate is None:
            self._keep(raw)
            return
        room = self.cap - len(self.data) + 1  # one byte past the cap proves it was exceeded
        try:
            out = self._inflate.decompress(raw, room)
        except zlib.error as exc:
            if not (self._first and self.coding == "deflate"):
                raise httpx.DecodingError(str(exc)) from exc
            self._inflate = self._new_inflater(raw_deflate=True)
            try:
                out = self._inflate.decompress(raw, room)
            except zlib.error as retry_exc:
                raise httpx.DecodingError(str(retry_exc)) from retry_exc
        self._first = False
        self._keep(out)  # unconsumed input is left only when ``room`` was filled: over the cap

    def finish(self) -> bytes:
        if self._inflate is not None:
            try:
                self._keep(self._inflate.flush())
            except zlib.error as exc:
                raise httpx.DecodingError(str(exc)) from exc
        return bytes(self.data)
