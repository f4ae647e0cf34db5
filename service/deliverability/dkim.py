"""DKIM signing (RFC 6376) at OpenSSL speed: dkimpy canonicalises, `cryptography` signs.

dkimpy is the reference for what a DKIM-Signature looks like and how headers
and body are canonicalised, and its `dkim.verify` is what the tests check
against; but its RSA is pure Python (about 150 signatures a second), slower
than the SMTP exchange it would sit in front of. So the header is built the
way `dkim.DKIM.sign`/`gen_header` build it, from the same dkimpy helpers
(`rfc822_parse`, `CanonicalizationPolicy`, `hash_headers`, `fold`), and only
the RSA PKCS#1 v1.5 signature over the SHA-256 of the canonical headers is
computed by OpenSSL through `cryptography` (thousands a second).

The copies of one issue differ only in a few header fields and body lines:
what they share is canonicalised once (header fields by their text, the
body's shared parts through `SharedBody`, the signature field's layout once
a second), so that the RSA signature is most of what a copy costs.

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

    body = relaxed_lines(body)
    return canonicalization.correct_empty_body(canonicalization.strip_trailing_lines(body))


def relaxed_lines(lines: bytes) -> bytes:
    """The relaxed form of each line (its whitespace), without the end-of-body rule.

    Line by line: the form of a text cut just after CRLFs is the forms of its
    pieces joined, which lets a body's shared lines be done once (`SharedBody`).
    """
    if b" \r\n" in lines or b"\t\r\n" in lines:
        lines = _TRAILING_WSP.sub(b"\r\n", lines)
    if b"\t" in lines:
        return _WSP_RUN.sub(b" ", lines)
    if b"  " in lines:
        return _SPACE_RUN.sub(b" ", lines)  # a literal prefix: much faster to search
    return lines


def split_message(message: bytes) -> tuple[list, bytes]:
    """(headers, body) as `dkim.rfc822_parse` returns them, without splitting the body
    into lines and joining it again when every line ends in CRLF (as ours do)."""
    import dkim as dkimpy  # on use: see the imports

    end = message.find(b"\r\n\r\n")
    if end < 0 or message.count(b"\n") != message.count(b"\r\n"):
        return dkimpy.rfc822_parse(message)
    headers, _ = dkimpy.rfc822_parse(message[: end + 2])
    return headers, message[end + 4 :]


_CRLF = b"\r\n"


def _bare_lf(data: bytes) -> bool:
    """Whether `data` may hold an LF without its CR (dkimpy reads one as a line break)."""
    return b"\n" in data and (data[0] == 10 or data.count(b"\n") != data.count(_CRLF))


def _split_empty_end(relaxed: bytes) -> tuple[bytes, int]:
    """(`relaxed` without the CRLFs it ends with, how many): its lines up to the last
    with content, and the empty lines after it, counting that line's own CRLF."""
    end = len(relaxed)
    while relaxed.endswith(_CRLF, 0, end):
        end -= 2
    return relaxed[:end], (len(relaxed) - end) // 2


class _RelaxedBodyHash:
    """SHA-256 of a relaxed body fed as pieces of its relaxed lines, each ending just after a
    CRLF (the last one may end anywhere), with the end-of-body rule applied on the way:
    the CRLFs at the end of what was fed are held back (`empty`) until content follows
    them, and the body ends with one CRLF after its last content, or is empty (RFC 6376
    §3.4.4, as dkimpy's `strip_trailing_lines` and `correct_empty_body` have it)."""

    __slots__ = ("content", "empty", "hasher")

    def __init__(self, hasher: Any, empty: int = 0, content: bool = False) -> None:
        self.hasher, self.empty, self.content = hasher, empty, content

    def copy(self) -> _RelaxedBodyHash:
        return _RelaxedBodyHash(self.hasher.copy(), self.empty, self.content)

    def feed(self, relaxed: bytes) -> None:
        self.feed_split(*_split_empty_end(relaxed))

    def feed_split(self, content: bytes, empty: int) -> None:
        """What `_split_empty_end` made of the next piece."""
        if content:
            if self.empty:
                self.hasher.update(_CRLF * self.empty)
            self.hasher.update(content)
            self.empty, self.content = empty, True
        else:
            self.empty += empty

    def digest(self) -> bytes:
        """The body hash (once: it ends the body)."""
        if self.content:
            self.hasher.update(_CRLF)
        return self.hasher.digest()


@dataclass(frozen=True)
class _RelaxedParts:
    """A `SharedBody`'s parts made ready once: the hash of the first part's whole lines, and
    for each further part its text up to its first CRLF (the end of the line a personal
    piece is in), its whole lines relaxed and split by `_split_empty_end`, and its text
    after its last CRLF (the start of the next personal piece's line). A part without a
    CRLF is all inside one line: its lines None. `clean`: no part holds a bare LF."""

    start: _RelaxedBodyHash
    first_tail: bytes
    rest: tuple[tuple[bytes, tuple[bytes, int] | None, bytes], ...]
    clean: bool


class SharedBody:
    """The body that copies of one message share but for personal pieces in between: each
    copy's body is `parts[0] + pieces[0] + parts[1] + … + pieces[-1] + parts[-1]`.

    An issue's skeleton (service/issues/rendering.py) makes one, and each copy it
    personalises is a `PersonalCopy` naming it: the signer canonicalises the shared
    parts once, not in every copy, and per copy only the lines that hold a
    personal piece (relaxed body canonicalisation, the only one the signer uses,
    is line by line).
    """

    __slots__ = ("_relaxed", "parts")

    def __init__(self, parts: Iterable[bytes]) -> None:
        self.parts = tuple(parts)
        if not self.parts:
            raise ValueError("a shared body has at least one part")
        self._relaxed: _RelaxedParts | None = None

    def _relaxed_parts(self) -> _RelaxedParts:
        if self._relaxed is None:
            first = self.parts[0]
            cut = first.rfind(_CRLF) + 2 if _CRLF in first else 0
            start = _RelaxedBodyHash(hashlib.sha256())
            start.feed(relaxed_lines(first[:cut]))
            rest: list[tuple[bytes, tuple[bytes, int] | None, bytes]] = []
            for part in self.parts[1:]:
                head_end, tail_start = part.find(_CRLF) + 2, part.rfind(_CRLF) + 2
                if head_end < 2:
                    rest.append((part, None, b""))
                    continue
                lines = _split_empty_end(relaxed_lines(part[head_end:tail_start]))
                rest.append((part[:head_end], lines, part[tail_start:]))
            clean = not any(_bare_lf(part) for part in self.parts)
            self._relaxed = _RelaxedParts(start, first[cut:], tuple(rest), clean)
        return self._relaxed

    def relaxed_hash(self, message: bytes, start: int, pieces: tuple[bytes, ...]) -> bytes | None:
        """The SHA-256 of the relaxed body of `message` (which starts at `start`), when it
        is this body with `pieces` in it (compared in place, at memcmp speed) and has no
        bare LF; None otherwise (then the body is canonicalised whole)."""
        prepared = self._relaxed_parts()
        if not prepared.clean or len(pieces) != len(prepared.rest):
            return None
        position = start
        for part, piece in zip(self.parts, (*pieces, b""), strict=True):
            if not message.startswith(part, position):
                return None
            position += len(part)
            if piece:
                if not message.startswith(piece, position) or _bare_lf(piece):
                    return None
                position += len(piece)
        if position != len(message):
            return None
        state = prepared.start.copy()
        line = [prepared.first_tail]
        for piece, (head, lines, tail) in zip(pieces, prepared.rest, strict=True):
            line += (piece, head)
            if lines is not None:
                state.feed(relaxed_lines(b"".join(line)))
                state.feed_split(*lines)
                line = [tail]
        state.feed(relaxed_lines(b"".join(line)))
        return state.digest()


class PersonalCopy(bytes):
    """One copy of a message, as bytes, that names the `SharedBody` its body was made from
    and its own pieces in it, so that the signer hashes only what is its own.

    The bytes are checked against the parts before the hint is used; and slicing or
    joining gives plain bytes, so the hint does not outlive the bytes it was made for.
    """

    shared_body: SharedBody | None = None
    pieces: tuple[bytes, ...] = ()

    @classmethod
    def of(cls, message: bytes, shared_body: SharedBody, pieces: Iterable[bytes]) -> PersonalCopy:
        copy = cls(message)
        copy.shared_body, copy.pieces = shared_body, tuple(pieces)
        return copy


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


@functools.lru_cache(maxsize=64)
def _header_plan(names: tuple[bytes, ...]) -> tuple[tuple[bytes, ...], tuple[int, ...]]:
    """(the h= list, the positions of the fields to hash in its order) for a message whose
    header fields have these canonical names; the same for all copies of an issue.

    dkimpy's `hash_headers` for the message's own fields: each name of h= takes the
    bottom-most instance not taken yet (RFC 6376 §5.4.2); a name with none left
    (oversigned) adds nothing.
    """
    include = headers_to_sign(names)
    positions: dict[bytes, list[int]] = {}
    for index, name in enumerate(names):
        positions.setdefault(name, []).append(index)
    order = []
    for name in include:
        left = positions.get(name)
        if left:
            order.append(left.pop())
    return tuple(include), tuple(order)


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
        `dkim.verify` accepts), with the RSA step done by OpenSSL. What is the
        same for many messages is done once: each header field's canonical form
        (`canonical_headers`), the choice of fields for h= (`_header_plan`), the
        signature field around its bh= and b= (`_signature_template`, per
        second), and the shared parts of a `PersonalCopy`'s body.
        """
        key = self.key()
        canonical, body_hash = _canonical_headers_and_body_hash(message)
        include, order = _header_plan(tuple(name for name, _ in canonical))
        if b"from" not in include:
            raise DkimError("cannot sign a message without From")
        template = _signature_template(
            self._d,
            self._s,
            int(time.time() if now is None else now),
            include,
            _signature_length(key.key_size),
        )
        bh = base64.b64encode(body_hash)
        hasher = hashlib.sha256()
        for index in order:
            name, value = canonical[index]
            hasher.update(name + b":" + value)
        hasher.update(template.hashed_field(bh))
        signature = key.sign(hasher.digest(), *_rsa_sha256())
        return template.field(bh, base64.b64encode(signature))


def _canonical_headers_and_body_hash(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The relaxed header fields of `message` and its body hash, as dkimpy's `rfc822_parse`
    and relaxed canonicalisation would have them; DkimError for a malformed message."""
    import dkim as dkimpy  # on use: see the imports

    try:
        canonical = canonical_headers(message)
        if canonical is None:
            headers, body = split_message(message)
            return _canonicalisation().canonicalize_headers(headers), _body_hash(body)
    except dkimpy.MessageFormatError as exc:
        raise DkimError(f"cannot sign a malformed message: {exc}") from exc
    start = message.find(b"\r\n\r\n") + 4
    if isinstance(message, PersonalCopy) and message.shared_body is not None:
        body_hash = message.shared_body.relaxed_hash(message, start, message.pieces)
        if body_hash is not None:
            return canonical, body_hash
    body = message[start:]
    if _bare_lf(body):  # dkimpy reads a bare LF as a line break: CRLF
        body = _LINE_BREAK.sub(_CRLF, body)
    return canonical, _body_hash(body)


def _body_hash(body: bytes) -> bytes:
    return hashlib.sha256(relaxed_body(body)).digest()


@functools.cache
def _rsa_sha256() -> tuple[Any, Any]:
    """RSA's arguments for rsa-sha256 over a SHA-256 already computed: (padding, hash)."""
    from cryptography.hazmat.primitives import hashes  # on use: see the imports
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    return padding.PKCS1v15(), Prehashed(hashes.SHA256())


def _signature_length(key_bits: int) -> int:
    """How long b= is: the base64 of an RSA signature, as long as the key's modulus."""
    return (((key_bits + 7) // 8 + 2) // 3) * 4


# Stand-ins for bh= and b= while the signature field is laid out: not base64, not
# whitespace, so dkimpy's folding and canonicalisation treat them as any letter.
_BH_MARK, _B_MARK = 0, 1
_MARKS = re.compile(rb"(\x00+|\x01+)")


@dataclass(frozen=True)
class _SignatureTemplate:
    """The DKIM-Signature field of one second's messages with one h= list, laid out once.

    `hashed`: what is hashed of the field itself (b= empty), before and after bh=;
    `layout`: the folded field as (literal text, then a slice of bh= or b=) pieces,
    and its text after the last slice: the value's length never changes (a SHA-256,
    a signature as long as the key), and dkimpy's `fold` breaks lines by length and
    spaces only, so the same layout holds for every message.
    """

    hashed: tuple[bytes, bytes]
    layout: tuple[tuple[bytes, int, int, int], ...]
    end: bytes

    def hashed_field(self, bh: bytes) -> bytes:
        return self.hashed[0] + bh + self.hashed[1]

    def field(self, bh: bytes, b: bytes) -> bytes:
        values = (bh, b)
        pieces = [text + values[mark][start:stop] for text, mark, start, stop in self.layout]
        pieces.append(self.end)
        return b"".join(pieces)


@functools.lru_cache(maxsize=16)
def _signature_template(
    domain: bytes, selector: bytes, timestamp: int, include: tuple[bytes, ...], b_length: int
) -> _SignatureTemplate:
    """The field as dkimpy's `DomainSigner.gen_header` builds it, with the marks for bh=
    and b=: placeholder b= first (folded, then emptied: what is hashed), then the
    signature's own length (what is sent)."""
    import dkim as dkimpy  # on use: see the imports

    bh, b = bytes([_BH_MARK]) * 44, bytes([_B_MARK]) * b_length
    fields = [
        (b"v", b"1"),
        (b"a", b"rsa-sha256"),
        (b"c", b"relaxed/relaxed"),
        (b"d", domain),
        (b"s", selector),
        (b"t", str(timestamp).encode("ascii")),
        (b"h", b" : ".join(include)),
        (b"bh", bh),
        # A placeholder of signature length, so that b= folds onto its own
        # line and refolding after filling it in moves no other tag.
        (b"b", b"0" * 60),
    ]
    namelen = len(_SIGNATURE_HEADER)
    unsigned = dkimpy.fold(b"; ".join(b"=".join(f) for f in fields), namelen=namelen)
    unsigned = dkimpy.RE_BTAG.sub(b"\\1", unsigned)
    # The signature's own header is hashed last, b= empty, without its CRLF (as
    # dkimpy's hash_headers does it).
    [(name, value)] = _canonicalisation().canonicalize_headers(
        [(_SIGNATURE_HEADER, dkimpy.RE_BTAG.sub(b"\\1", b" " + unsigned))]
    )
    hashed = (name + b":" + value.rstrip()).split(bh)
    fields[-1] = (b"b", b)
    value = b"; ".join(b"=".join(f) for f in fields) + b"\r\n"
    parts = _MARKS.split(_SIGNATURE_HEADER + b": " + dkimpy.fold(value, namelen=namelen))
    layout, taken = [], [0, 0]
    for text, run in zip(parts[0::2], parts[1::2], strict=False):
        mark = run[0]
        layout.append((text, mark, taken[mark], taken[mark] + len(run)))
        taken[mark] += len(run)
    if len(hashed) != 2 or taken != [len(bh), len(b)]:
        # Only a selector with control characters could do this (the settings allow
        # letters, digits and hyphens).
        raise DkimKeyError(f"cannot lay out a DKIM signature for selector {selector!r}")
    return _SignatureTemplate((hashed[0], hashed[1]), tuple(layout), parts[-1])


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
