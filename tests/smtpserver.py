"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, in its own thread.

Use it as a context manager (or through the ``smtp_server`` fixture)::

    with SMTPServer(tls="starttls", username="robot", password="pw") as server:
        notifier = EmailNotifier(server.email_config(to=["ops@example.test"]),
                                 env=server.env, tls_context=server.client_tls)
        ...
        [received] = server.messages

``tls``: ``"none"``, ``"starttls"`` (STARTTLS offered; AUTH only after it) or ``"implicit"``
(TLS from the first byte). The certificate is for 127.0.0.1 and localhost, signed by a
throwaway CA; ``client_tls`` is an :class:`ssl.SSLContext` that trusts only that CA.

Knobs: :meth:`refuse` makes RCPT answer a given reply for some addresses; :attr:`busy`
makes MAIL answer a 4xx (e.g. 421) reply; :meth:`down` stops listening (connections are
refused) and :meth:`up` listens again on the same port. Messages are recorded before the
server answers DATA, so they are in :attr:`messages` as soon as the client's send returns.
"""

from __future__ import annotations

import email
import email.policy
import ipaddress
import ssl
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from remediator.config.model import EmailConfig
from tests.realservices import free_port

TLSMode = Literal["none", "starttls", "implicit"]
HOST = "127.0.0.1"
PASSWORD_ENV = "REMEDIATOR_TEST_SMTP_PASSWORD"
NO_SUCH_USER = "550 5.1.1 no such user"
TRY_LATER = "450 4.2.0 try later"
SERVICE_UNAVAILABLE = "421 4.3.2 service not available"


@dataclass(frozen=True)
class Received:
    """One delivered message, as the server got it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage
    tls: bool
    login: str | None


@dataclass(frozen=True)
class Certificates:
    """A throwaway CA and a server certificate it signed, PEM-encoded."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only this CA (hostname checks stay on)."""
        return ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            cert.write_bytes(self.cert_pem + self.ca_pem)
            key.write_bytes(self.key_pem)
            ctx.load_cert_chain(cert, key)
        return ctx


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_certificates() -> Certificates:
    """A CA and a certificate for 127.0.0.1 / localhost, valid for a day."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("remediator test CA"))
        .issuer_name(_name("remediator test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address(HOST)),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Certificates(
        ca_pem=ca_cert.public_bytes(pem),
        cert_pem=cert.public_bytes(pem),
        key_pem=key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


class _Handler:
    """aiosmtpd hooks: enforce AUTH, refuse configured recipients, record deliveries."""

    def __init__(self, owner: SMTPServer) -> None:
        self._owner = owner

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self._owner.busy:
            return self._owner.busy
        if self._owner.username is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self._owner.refused.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = getattr(session.auth_data, "login", None)
        self._owner.messages.append(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                raw=raw,
                message=message,
                tls=session.ssl is not None or self._owner.tls == "implicit",
                login=login.decode() if isinstance(login, bytes) else None,
            )
        )
        return "250 2.0.0 Message accepted for delivery"


class SMTPServer:
    """A real SMTP server on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        *,
        tls: TLSMode = "none",
        username: str | None = None,
        password: str | None = None,
        port: int | None = None,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.tls: TLSMode = tls
        self.username = username
        self.password = password
        self.host = HOST
        self.port = port or free_port(HOST)
        self.messages: list[Received] = []
        self.refused: dict[str, str] = {}  # lowercased address -> RCPT reply
        self.busy: str | None = None  # set: MAIL is answered with this reply
        self.logins: list[tuple[str, bool]] = []  # (login, accepted), in order
        self._lock = threading.Lock()
        self._certs = make_certificates() if tls != "none" else None
        self._controller: Controller | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def _make_controller(self) -> Controller:
        kwargs: dict[str, Any] = {"hostname": self.host, "port": self.port, "ready_timeout": 10}
        if self._certs is not None and self.tls == "starttls":
            kwargs["tls_context"] = self._certs.server_context()
        if self._certs is not None and self.tls == "implicit":
            kwargs["ssl_context"] = self._certs.server_context()
            # aiosmtpd only counts STARTTLS as TLS; the whole connection is TLS here.
            kwargs["auth_require_tls"] = False
        if self.username is not None:
            kwargs["authenticator"] = self._authenticate
        return Controller(_Handler(self), server_hostname="smtp.test", **kwargs)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == (self.username or "").encode()
            and data.password == (self.password or "").encode()
        )
        login = data.login.decode(errors="replace") if isinstance(data, LoginPassword) else ""
        self.logins.append((login, ok))
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def up(self) -> None:
        """Start listening (again, on the same port)."""
        with self._lock:
            if self._controller is not None:
                return
            controller = self._make_controller()
            controller.start()
            self._controller = controller

    def down(self) -> None:
        """Stop listening: new connections are refused until :meth:`up`."""
        with self._lock:
            controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    start, stop = up, down

    @property
    def is_up(self) -> bool:
        return self._controller is not None

    def __enter__(self) -> SMTPServer:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    # -- knobs -----------------------------------------------------------------------------

    def refuse(self, *addresses: str, reply: str = NO_SUCH_USER) -> None:
        """RCPT TO any of ``addresses`` is answered with ``reply`` (e.g. ``TRY_LATER``)."""
        for address in addresses:
            self.refused[address.lower()] = reply

    # -- for clients -----------------------------------------------------------------------

    @property
    def client_tls(self) -> ssl.SSLContext | None:
        """A client SSLContext trusting this server's CA (None for a plain server)."""
        return self._certs.client_context() if self._certs is not None else None

    @property
    def ca_pem(self) -> bytes:
        """The throwaway CA's certificate (PEM), for clients configured with a CA file."""
        assert self._certs is not None, "a plain server has no CA"
        return self._certs.ca_pem

    @property
    def env(self) -> dict[str, str]:
        """The environment an :class:`EmailNotifier` needs (the password under PASSWORD_ENV)."""
        return {PASSWORD_ENV: self.password} if self.password is not None else {}

    def email_config(self, **overrides: Any) -> EmailConfig:
        """An :class:`EmailConfig` pointing at this server; ``overrides`` replace fields."""
        data: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "tls": self.tls,
            "sender": "remediator@example.test",
            "to": ["oncall@example.test"],
            "timeout": 5.0,
        }
        if self.username is not None:
            data |= {"username": self.username, "password_env": PASSWORD_ENV}
        data.update(overrides)
        return EmailConfig.model_validate(data)

    def to(self, address: str) -> list[Received]:
        """The messages delivered to ``address``."""
        return [m for m in self.messages if address.lower() in (r.lower() for r in m.rcpt_tos)]


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    """A plain SMTP server on 127.0.0.1 (no TLS, no AUTH), stopped after the test."""
    with SMTPServer() as server:
        yield server
