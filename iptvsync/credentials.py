"""Line credentials: a deterministic username, a random password, encrypted at rest.

The username is derived from the subscription key with an HMAC under the install's secret
key, so re-running after a crash asks the panel for the same line, and nobody can guess
another buyer's username from their own. Passwords are generated once with ``secrets`` and
stored Fernet-encrypted *before* the first create call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken

from .errors import ConfigError

_ALNUM = string.ascii_letters + string.digits
_B36 = string.digits + string.ascii_lowercase


def _fernet(secret_key: str) -> Fernet:
    try:
        return Fernet(secret_key.encode())
    except (ValueError, TypeError):
        # Not a Fernet key (someone typed a passphrase): derive one, deterministically.
        return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest()))


def username_for(subscription_key: str, secret_key: str, length: int = 12) -> str:
    digest = int.from_bytes(hmac.new(secret_key.encode(), subscription_key.encode(), "sha256").digest())
    chars = []
    for _ in range(length - 2):
        digest, rem = divmod(digest, 36)
        chars.append(_B36[rem])
    return "tv" + "".join(chars)


def new_password(length: int = 14) -> str:
    # Panels reject or mangle '/', quotes and spaces: letters and digits only, at least one of each.
    while True:
        pw = "".join(secrets.choice(_ALNUM) for _ in range(length))
        if any(c.isdigit() for c in pw) and any(c.isupper() for c in pw) and any(c.islower() for c in pw):
            return pw


def encrypt(password: str, secret_key: str) -> str:
    return _fernet(secret_key).encrypt(password.encode()).decode()


def decrypt(token: str, keys: str | Sequence[str]) -> str:
    """``keys``: one key, or a keyring tried in order (the current key, a rekey's pending one,
    the retired ones that older backups need)."""
    for key in [keys] if isinstance(keys, str) else keys:
        try:
            return _fernet(key).decrypt(token.encode()).decode()
        except InvalidToken:
            continue
    raise ConfigError("IPTVSYNC_SECRET_KEY (nor any of IPTVSYNC_RETIRED_KEYS) does not decrypt the stored"
                      " panel passwords: a ledger from another install, or a lost .env?")
