"""A certificate for the local namespace's administration API over HTTPS.

azure-servicebus 7.15's ``ServiceBusAdministrationClient`` dials ``https://`` even
for a ``UseDevelopmentEmulator=true`` connection string: it works out that TLS is
not wanted (``use_tls=False``) but its transport never reads that. So the local
namespace answers TLS on its port too, with a certificate made when it starts and
valid for its host names; a client trusts it with
``connection_verify=namespace.certificate_path`` (or ``REQUESTS_CA_BUNDLE``).
The key is written (0600, in a private 0700 directory) only for as long as the TLS
context takes to load it, then removed; the certificate is removed on stop.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import ssl
import tempfile
from collections.abc import Iterable
from pathlib import Path


class Certificate:
    """A self-signed certificate and key in a private directory, and the server's TLS context."""

    def __init__(self, hosts: Iterable[str]) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="geobus-local-tls-"))
        os.chmod(self.directory, 0o700)
        self.path = self.directory / "certificate.pem"
        key_path = self.directory / "key.pem"
        certificate, key = _self_signed(sorted(set(hosts)))
        self.path.write_bytes(certificate)
        key_path.touch(0o600)
        key_path.write_bytes(key)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(self.path, key_path)
        # The context holds the key now: a process that dies leaves no key on disk.
        key_path.unlink()

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _self_signed(hosts: list[str]) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "geobus local namespace")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
