"""Throw-away PKI for the local control plane: a CA, a serving certificate, client certificates.

EC P-256 keys for speed; the service-account signing key is RSA (PKCS#1 PEM), the format that
kube-apiserver's ``--service-account-key-file`` and ``--service-account-signing-key-file`` read.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertificateAuthority",
    "KeyPair",
    "rsa_private_key_pem",
    "write_private",
]

DEFAULT_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM private key."""

    cert_pem: bytes
    key_pem: bytes

    def write(self, cert_path: Path, key_path: Path) -> None:
        write_private(cert_path, self.cert_pem)
        write_private(key_path, self.key_pem)


def write_private(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` readable by the owner only (created that way, no window)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with tmp.open("xb") as handle:
        tmp.chmod(0o600)
        handle.write(data)
    tmp.replace(path)
    return path


def _private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    # TraditionalOpenSSL = PKCS#1 for RSA and SEC1 ("EC PRIVATE KEY") for EC: what Go's keyutil
    # and every Kubernetes client accept.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def rsa_private_key_pem(bits: int = 2048) -> bytes:
    """A fresh RSA private key, PKCS#1 PEM (for the service-account token signer)."""
    return _private_pem(rsa.generate_private_key(public_exponent=65537, key_size=bits))


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


class CertificateAuthority:
    """A self-signed CA that issues serving and client certificates."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self.cert = cert

    @classmethod
    def create(
        cls, common_name: str, validity: dt.timedelta = DEFAULT_VALIDITY
    ) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _private_pem(self._key)

    def issue_server(
        self,
        common_name: str,
        *,
        ips: Sequence[str] = ("127.0.0.1",),
        dns_names: Sequence[str] = ("localhost",),
        validity: dt.timedelta = DEFAULT_VALIDITY,
    ) -> KeyPair:
        """A serving certificate; clients check the SANs, not the CN."""
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        return self._issue(
            [x509.NameAttribute(NameOID.COMMON_NAME, common_name)],
            ExtendedKeyUsageOID.SERVER_AUTH,
            validity,
            sans,
        )

    def issue_client(
        self,
        user: str,
        groups: Sequence[str] = (),
        *,
        validity: dt.timedelta = DEFAULT_VALIDITY,
    ) -> KeyPair:
        """A client certificate as kube-apiserver reads it: CN = user name, O = groups."""
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, user)]
        attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        return self._issue(attrs, ExtendedKeyUsageOID.CLIENT_AUTH, validity, None)

    def _issue(
        self,
        subject: list[x509.NameAttribute[str]],
        usage: x509.ObjectIdentifier,
        validity: dt.timedelta,
        sans: list[x509.GeneralName] | None,
    ) -> KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _private_pem(key))
