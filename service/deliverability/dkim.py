"""DKIM signing (RFC 6376) at OpenSSL speed: dkimpy canonicalises, `cryptography` signs.

dkimpy is the reference for what a DKIM-Signature looks like and how headers
and body are canonicalised, and its `dkim.verify` is what the tests check
against; but its RSA is pure Python (about 150 signatures a second), slower
than the SMTP exchange it would sit in front of. So the header is built the
way `dkim.DKIM.sign`/`gen_header` build it, from the same dkimpy helpers
(`rfc822_parse`, `CanonicalizationPolicy`, `hash_headers`, `fold`), and only
the RSA PKCS#1 v1.5 signature over the SHA-256 of the canonical headers is
computed by OpenSSL through `cryptography` (thousands a second).

rsa-sha256, relaxed/relaxed: relaxed header canonicalisation survives relays
that refold headers, relaxed body survives trailing-whitespace changes.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# dkimpy and cryptography's RSA are imported where they are used, not here: they
# take ~10 MB of every process, and every process imports this module (the
# configuration checks and the SMTP transport name its errors), while only a
# process that signs or handles keys needs them (a worker with DKIM off never does).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

KEY_BITS = 2048
MIN_KEY_BITS = 1024  # receivers ignore shorter keys (RFC 8301)

# Signed when present, in the order they appear in the message. dkimpy's default
# set (RFC 6376 §5.4.1) lacks List-Unsubscribe-Post, which RFC 8058 requires to
# be signed for one-click unsubscribe to count.
SIGNED_HEADERS = frozenset(
    {
        b"from",
        b"sender",
        b"reply-to",
        b"subject",
        b"date",
        b"message-id",
        b"to",
        b"cc",
        b"mime-version",
        b"content-type",
        b"content-transfer-encoding",
        b"content-id",
        b"content-description",
        b"in-reply-to",
        b"references",
        b"list-id",
        b"list-help",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
        b"list-subscribe",
        b"list-post",
        b"list-owner",
        b"list-archive",
        b"auto-submitted",
        b"precedence",
        b"feedback-id",
    }
)
# Named once more in h= than they occur ("oversigned"): a relay or attacker
# cannot add a second From, Subject or unsubscribe target without breaking the
# signature (verifiers read the bottom-most instance).
OVERSIGNED_HEADERS = frozenset(
    {
        b"from",
        b"reply-to",
        b"subject",
        b"date",
        b"message-id",
        b"to",
        b"cc",
        b"list-id",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
    }
)

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


@functools.cache
def _canonicalisation():
    """dkimpy's relaxed/relaxed policy (imported on first signature, see above)."""
    from dkim.canonicalization import CanonicalizationPolicy

    return CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")


_SIGNATURE_HEADER = b"DKIM-Signature"


class DkimError(Exception):
    """The message cannot be signed (it is malformed or has no From)."""


class DkimKeyError(DkimError):
    """The private key is missing, unreadable or unusable: an operator's problem."""


@functools.lru_cache(maxsize=8)
def _load_key(path: str, mtime_ns: int, size: int) -> rsa.RSAPrivateKey:
    """The parsed key; cached per file version, so a worker parses it once, not per mail."""
    from cryptography.exceptions import UnsupportedAlgorithm  # on use: see the imports
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise DkimKeyError(f"cannot read DKIM key {path}: {exc.strerror or exc}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise DkimKeyError(f"DKIM key {path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimKeyError(f"DKIM key {path} is not an RSA key (rsa-sha256 needs one)")
    if key.key_size < MIN_KEY_BITS:
        raise DkimKeyError(
            f"DKIM key {path} has {key.key_size} bits; receivers ignore keys under "
            f"{MIN_KEY_BITS} bits (generate one: zpravodaj dkim keygen)"
        )
    return key


def load_private_key(path: str) -> rsa.RSAPrivateKey:
    """The RSA key in the PEM file at `path`, or DkimKeyError saying what is wrong with it.

    Keyed by the file's mtime and size too, so replacing the key file is noticed
    by long-running workers without a restart.
    """
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise DkimKeyError(f"cannot read DKIM key {path}: {exc.strerror or exc}") from exc
    return _load_key(os.path.abspath(path), stat.st_mtime_ns, stat.st_size)


def ascii_domain(domain: str) -> str:
    """d= is an A-label domain: an IDN signing domain goes out in its xn-- form."""
    cleaned = domain.strip().rstrip(".").lower()
    try:
        encoded = cleaned.encode("idna").decode("ascii")
    except UnicodeError:
        encoded = ""
    if "." not in encoded or not all(_LABEL.fullmatch(label) for label in encoded.split(".")):
        raise DkimKeyError(f"{domain!r} is not a valid domain name")
    return encoded


# Relaxed body canonicalisation (RFC 6376 §3.4.4) as dkimpy does it, minus the
# work that changes nothing: dkimpy's `[\t ]+` -> " " also "replaces" every lone
# space by itself, which made canonicalising a 10 kB newsletter cost as much as
# the RSA signature. Here each substitution runs only when the body holds
# something it would change (a C-speed `in` test), and matches only that.
# Equality with dkimpy's result is tested (tests/deliverability/test_dkim.py).
_TRAILING_WSP = re.compile(rb"[\t ]+\r\n")
_WSP_RUN = re.compile(rb"\t[\t ]*| [\t ]+")  # every run of WSP except a lone space
_SPACE_RUN = re.compile(rb"  +")  # the same when there are no tabs


def relaxed_body(body: bytes) -> bytes:
    """The relaxed canonical form of a CRLF body; equal to dkimpy's `Relaxed.canonicalize_body`."""
    from dkim import canonicalization  # on use: see the imports

    if b" \r\n" in body or b"\t\r\n" in body:
        body = _TRAILING_WSP.sub(b"\r\n", body)
    if b"\t" in body:
        body = _WSP_RUN.sub(b" ", body)
    elif b"  " in body:
        body = _SPACE_RUN.sub(b" ", body)  # a literal prefix: much faster to search
    return canonicalization.correct_empty_body(canonicalization.strip_trailing_lines(body))


def split_message(message: bytes) -> tuple[list, bytes]:
    """(headers, body) as `dkim.rfc822_parse` returns them, without splitting the body
    into lines and joining it again when every line ends in CRLF (as ours do)."""
    import dkim as dkimpy  # on use: see the imports

    end = message.find(b"\r\n\r\n")
    if end < 0 or message.count(b"\n") != message.count(b"\r\n"):
        return dkimpy.rfc822_parse(message)
    headers, _ = dkimpy.rfc822_parse(message[: end + 2])
    return headers, message[end + 4 :]


# A header field starts at a line not beginning with WSP (RFC 5322 §2.2.3), and its
# name is what dkimpy's rfc822_parse takes for one.
_FIELD_START = re.compile(rb"\r\n(?![\t ])")
_FIELD_NAME = re.compile(rb"([\x21-\x7e]+?):")
_LINE_BREAK = re.compile(rb"\r?\n")
_WSP = re.compile(rb"[\t ]+")
# Canonical forms of the header fields seen last: an issue's copies share all but
# the four personal ones (To, Date, Message-ID, List-Unsubscribe), so most fields
# are canonicalised once per issue instead of once per copy.
_CANONICAL_FIELDS: dict[bytes, tuple[bytes, bytes]] = {}
_CANONICAL_FIELDS_MAX = 512


def canonical_headers(message: bytes) -> list[tuple[bytes, bytes]] | None:
    """The relaxed canonical (name, value) of each header field of a CRLF message, equal
    to dkimpy's `Relaxed.canonicalize_headers(rfc822_parse(message)[0])`; None when
    the message is one dkimpy must parse itself (bare LFs, no header end, a header
    block that starts with a continuation line, an mbox "From " line)."""
    end = message.find(b"\r\n\r\n")
    head = message[:end]
    if end <= 0 or head[0] in b"\t \r\n" or b"\n" in head.replace(b"\r\n", b""):
        return None
    if head.startswith(b"From ") or b"\nFrom " in head:  # mbox lines: dkimpy's own way
        return None
    canonical = []
    for field in _FIELD_START.split(head):
        known = _CANONICAL_FIELDS.get(field)
        if known is None:
            known = _canonical_field(field)
            if len(_CANONICAL_FIELDS) >= _CANONICAL_FIELDS_MAX:
                _CANONICAL_FIELDS.clear()
            _CANONICAL_FIELDS[field] = known
        canonical.append(known)
    return canonical


def _canonical_field(field: bytes) -> tuple[bytes, bytes]:
    """One field's relaxed form."""
    import dkim as dkimpy  # on use: see the imports

    match = _FIELD_NAME.match(field)
    if match is None:
        raise dkimpy.MessageFormatError(f"Unexpected characters in RFC822 header: {field!r}")
    value = _LINE_BREAK.sub(b"", field[match.end() :])
    return match.group(1).lower().rstrip(), _WSP.sub(b" ", value).strip() + b"\r\n"


def hash_selected_headers(
    hasher: Any, canonical: list[tuple[bytes, bytes]], include: list[bytes]
) -> None:
    """dkimpy's `hash_headers` for the message's own fields: each name of `include` takes
    the bottom-most instance not taken yet (RFC 6376 §5.4.2); a name with none left
    (oversigned) adds nothing."""
    positions: dict[bytes, list[int]] = {}
    for index, (name, _) in enumerate(canonical):
        positions.setdefault(name, []).append(index)
    for name in include:
        left = positions.get(name)
        if left:
            hasher.update(name + b":" + canonical[left.pop()][1])


def headers_to_sign(names: Iterable[bytes]) -> list[bytes]:
    """The h= list for a message with these header names (in order): the signed ones
    as they occur, then the oversigned ones once more."""
    include = [name.lower() for name in names if name.lower() in SIGNED_HEADERS]
    return include + [name for name in dict.fromkeys(include) if name in OVERSIGNED_HEADERS]


@dataclass
class DkimSigner:
    """Turns a raw RFC 5322 message into the same message with a DKIM-Signature on top.

    The key is loaded on first use (and cached per process), so a transport
    can be built with a signer even when the key file has just gone missing;
    the failure then shows on the send, where the worker retries it.
    """

    domain: str
    selector: str
    key_path: str | None = None
    private_key: rsa.RSAPrivateKey | None = None

    def __post_init__(self) -> None:
        self._d = ascii_domain(self.domain).encode("ascii")
        self._s = self.selector.strip().encode("ascii")
        if self.private_key is None and self.key_path is None:
            raise DkimKeyError("DkimSigner needs a key or a key path")

    def key(self) -> rsa.RSAPrivateKey:
        if self.private_key is None:
            if self.key_path is None:  # refused by __post_init__; for the type checker
                raise DkimKeyError("DkimSigner needs a key or a key path")
            self.private_key = load_private_key(self.key_path)
        return self.private_key

    def __call__(self, message: bytes) -> bytes:
        return self.signature(message) + message

    def warm(self) -> None:
        """Load the key and dkimpy now (DkimKeyError if the key is unusable).

        A worker does this once before it forks its work horses, which then
        inherit both: otherwise every batch's work horse imported dkimpy and
        parsed and checked the RSA key again (≈ 0.35 s of CPU, as much as
        signing a few hundred messages; bench/README.md, Delivery).
        """
        import dkim  # noqa: F401 (on use, see the imports: here the use is near)
        from cryptography.hazmat.primitives.asymmetric import padding  # noqa: F401

        self.key()
        _canonicalisation()

    def signature(self, message: bytes, *, now: float | None = None) -> bytes:
        """The `DKIM-Signature: …\\r\\n` header line(s) for `message`.

        Mirrors dkimpy's `DKIM.sign` + `DomainSigner.gen_header` (whose output
        `dkim.verify` accepts), with the RSA step done by OpenSSL.
        """
        import dkim as dkimpy  # on use: see the imports
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

        key = self.key()
        try:
            canonical = canonical_headers(message)
            if canonical is None:
                headers, body = split_message(message)
                canonical = _canonicalisation().canonicalize_headers(headers)
            else:
                body = message[message.find(b"\r\n\r\n") + 4 :]
        except dkimpy.MessageFormatError as exc:
            raise DkimError(f"cannot sign a malformed message: {exc}") from exc
        include = headers_to_sign(name for name, _ in canonical)
        if b"from" not in include:
            raise DkimError("cannot sign a message without From")

        body_hash = hashlib.sha256(relaxed_body(body)).digest()
        timestamp = int(time.time() if now is None else now)
        fields = [
            (b"v", b"1"),
            (b"a", b"rsa-sha256"),
            (b"c", b"relaxed/relaxed"),
            (b"d", self._d),
            (b"s", self._s),
            (b"t", str(timestamp).encode("ascii")),
            (b"h", b" : ".join(include)),
            (b"bh", base64.b64encode(body_hash)),
            # A placeholder of signature length, so that b= folds onto its own
            # line and refolding after filling it in moves no other tag.
            (b"b", b"0" * 60),
        ]
        namelen = len(_SIGNATURE_HEADER)
        unsigned = dkimpy.fold(b"; ".join(b"=".join(f) for f in fields), namelen=namelen)
        unsigned = dkimpy.RE_BTAG.sub(b"\\1", unsigned)
        hasher = hashlib.sha256()
        hash_selected_headers(hasher, canonical, include)
        # The signature's own header last, b= empty, without its CRLF (as dkimpy's
        # hash_headers does it).
        [(name, value)] = _canonicalisation().canonicalize_headers(
            [(_SIGNATURE_HEADER, dkimpy.RE_BTAG.sub(b"\\1", b" " + unsigned))]
        )
        hasher.update(name + b":" + value.rstrip())
        signature = key.sign(hasher.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        fields[-1] = (b"b", base64.b64encode(signature))
        value = b"; ".join(b"=".join(f) for f in fields) + b"\r\n"
        return _SIGNATURE_HEADER + b": " + dkimpy.fold(value, namelen=namelen)


def signer_from_config(config: Mapping[str, Any]) -> DkimSigner | None:
    """The signer DKIM_DOMAIN/DKIM_SELECTOR/DKIM_PRIVATE_KEY_PATH describe, None when unset."""
    domain, selector, path = (
        config.get("DKIM_DOMAIN"),
        config.get("DKIM_SELECTOR"),
        config.get("DKIM_PRIVATE_KEY_PATH"),
    )
    if not (domain and selector and path):
        return None
    return DkimSigner(domain=domain, selector=selector, key_path=path)


# --- keys and their DNS record -------------------------------------------------


def generate_private_key() -> rsa.RSAPrivateKey:
    from cryptography.hazmat.primitives.asymmetric import rsa  # on use: see the imports

    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """PKCS#1 PEM ("BEGIN RSA PRIVATE KEY"): what OpenDKIM, Postfix, dkimpy all read."""
    from cryptography.hazmat.primitives import serialization  # on use: see the imports

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def public_key_b64(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """The p= value: the DER SubjectPublicKeyInfo, base64, as RFC 6376 §3.6.1 has it."""
    from cryptography.hazmat.primitives import serialization  # on use: see the imports
    from cryptography.hazmat.primitives.asymmetric import rsa

    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def record_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{ascii_domain(domain)}"


def record_value(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    return f"v=DKIM1; k=rsa; p={public_key_b64(key)}"


def txt_strings(value: str, size: int = 255) -> list[str]:
    """A TXT value cut into DNS character-strings (each at most 255 bytes)."""
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


def zone_line(selector: str, domain: str, key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """The record as a zone-file line, e.g. `s._domainkey.d. IN TXT "v=DKIM1; …" "…"`.

    The name ends with a dot (fully qualified): pasted into a BIND zone without
    it, the zone's origin would be appended to it.
    """
    quoted = " ".join(f'"{part}"' for part in txt_strings(record_value(key)))
    return f"{record_name(selector, domain)}. IN TXT {quoted}"


def parse_record(strings: list[str] | str) -> dict[str, str]:
    """The tags of a DKIM TXT record (its strings joined, as RFC 6376 §3.6.2.2 says)."""
    text = strings if isinstance(strings, str) else "".join(strings)
    tags = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags[name.strip()] = "".join(value.split())
    return tags
