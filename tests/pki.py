"""A throwaway PKI for TLS tests: a CA, a collector certificate, hosts' client certificates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from roard.collector.transport import TlsFiles


@dataclass(frozen=True)
class Pki:
    """A CA, the collector's certificate, and hosts' client certificates."""

    ca: Path
    server: TlsFiles  # the collector's certificate and key, and the CA for client certs
    clients: dict[str, TlsFiles]  # by name; each trusts `ca` for the collector


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    *,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    """A certificate for `key`: a self-signed CA without `issuer`, else a leaf for `usage`."""
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer[0].subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is None:
        builder = builder.add_extension(
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
        return builder.sign(key, hashes.SHA256())
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer[1], hashes.SHA256())


def _write(directory: Path, stem: str, cert: x509.Certificate, key: Any) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def make_pki(directory: Path) -> Pki:
    """A test CA (plus an untrusted one) and certificates signed by it, under `directory`."""
    ca_key, other_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca, other = _issue("roard test CA", ca_key), _issue("someone else's CA", other_key)
    ca_path, _ = _write(directory, "ca", ca, ca_key)
    other_path, _ = _write(directory, "other-ca", other, other_key)

    def leaf(stem: str, cn: str, signer: tuple[x509.Certificate, Any], usage: Any) -> TlsFiles:
        key = ec.generate_private_key(ec.SECP256R1())
        cert_path, key_path = _write(directory, stem, _issue(cn, key, signer, usage=usage), key)
        return TlsFiles(cert=cert_path, key=key_path, ca=ca_path)

    client = ExtendedKeyUsageOID.CLIENT_AUTH
    return Pki(
        ca=ca_path,
        server=leaf("server", "collector", (ca, ca_key), ExtendedKeyUsageOID.SERVER_AUTH),
        clients={
            "host-a": leaf("host-a", "host-a", (ca, ca_key), client),
            "host-b": leaf("host-b", "host-b", (ca, ca_key), client),
            # The right name, signed by a CA the collector does not trust.
            "rogue": leaf("rogue", "host-a", (other, other_key), client),
            "no-cert": TlsFiles(ca=ca_path),
            # Trusts the wrong CA: must not accept the collector's certificate.
            "wrong-trust": TlsFiles(ca=other_path),
        },
    )
