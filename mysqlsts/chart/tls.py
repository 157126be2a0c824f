"""The cluster's TLS material: a private CA and one certificate every pod presents.

Replication and the clone stream are encrypted and each side checks the other
against this CA, so a host that can reach the ports but holds no certificate
signed by it learns nothing and gets nothing. The pair is made once, at the
first render of a cluster, and kept beside the passwords (the Secret on
Kubernetes, the secret file on the local runtime): it is never regenerated
while present, because pods trust exactly the CA they started with. Rotation
is not handled (docs/secrets.md).

One certificate serves every pod (as server and as client): its names cover
each pod's per-pod DNS name, through the headless Service wildcard (which also
covers ordinals added by a later scale-out) and explicitly for the ordinals
known at generation time, plus the Services. On the local runtime the pods
have the same names (its dnsmasq serves the same zone); their loopback
addresses change with every pod start and nothing connects by address, so no
address is named.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mysqlsts.chart.values import Values

# key in the stored secrets -> key in the Secret's data (the kubernetes.io/tls names, plus ca.crt)
DATA_KEYS = {"tlsCA": "ca.crt", "tlsCert": "tls.crt", "tlsKey": "tls.key"}
VALIDITY = datetime.timedelta(days=3650)  # no rotation: long enough to outlive the cluster's configuration
CLOCK_SKEW = datetime.timedelta(hours=1)


def dns_names(values: Values) -> list[str]:
    """Every name a pod is reached by: per pod, the headless wildcard and the Services."""
    name, suffix = values["name"], f"{values['namespace']}.svc.{values['clusterDomain']}"
    zone = f"{name}.{suffix}"  # the headless Service is named after the cluster (render.Names)
    pods = [f"{name}-{i}.{zone}" for i in range(values["replicas"])]
    return [f"*.{zone}", *pods, zone, f"{name}-primary.{suffix}", f"{name}-read.{suffix}"]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mysqlsts"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def generate(values: Values) -> dict[str, str]:
    """A new CA and a certificate signed by it for every name in `dns_names`, as PEM text."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"mysqlsts {values['name']}.{values['namespace']} CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + VALIDITY)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = dns_names(values)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(f"{values['name']}.{values['namespace']}")).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return {"tlsCA": _pem(ca), "tlsCert": _pem(cert), "tlsKey": key_pem}


def keep_or_generate(values: Values, kept: dict[str, str]) -> dict[str, str]:
    """The stored pair when there is one (never regenerated), else a new one."""
    if all(kept.get(k) for k in DATA_KEYS):
        return {k: kept[k] for k in DATA_KEYS}
    return generate(values)
