"""Sign-in material for tests and the bench: Streamlit OIDC secrets that point nowhere, and a
local EC key standing in for Google's IAP signing keys (the app reads its public half from
IAP_CERTS_FILE)."""

from __future__ import annotations

import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.auth import jwt
from google.auth.crypt import es256

from webapp.access.iap import IAP_ISSUER

#: an ``[auth]`` section for ``st.secrets``: login is "configured", the provider unreachable
OIDC_SECRETS = {
    "auth": {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "not-a-real-secret",
        "client_id": "client",
        "client_secret": "not-a-real-secret",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
    }
}


def iap_keypair(kid: str) -> tuple[es256.ES256Signer, str]:
    """A fresh ES256 signer with key id ``kid`` and its public key as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return es256.ES256Signer.from_string(private_pem, key_id=kid), public_pem.decode()


def iap_token(signer: es256.ES256Signer, audience: str, email: str) -> str:
    """The JWT IAP puts in ``x-goog-iap-jwt-assertion`` for a signed-in ``email``."""
    now = int(time.time())
    claims = {"iss": IAP_ISSUER, "aud": audience, "iat": now - 5, "exp": now + 3600,
              "sub": "accounts.google.com:42", "email": email}  # fmt: skip
    return jwt.encode(signer, claims).decode()
