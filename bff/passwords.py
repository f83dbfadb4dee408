"""Password hashing with scrypt (memory-hard), parameters stored with each hash.

One scrypt costs tens of milliseconds of CPU and 16 MiB. It runs on a small pool of its own
threads (hashlib releases the GIL while it works), never on the event loop: there it would
stop every browser's stream and request for the whole hash, once per login.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import os
from concurrent.futures import ThreadPoolExecutor

N, R, P = 2**14, 8, 1

#: Hashes at once: enough to use the cores, few enough that a burst of logins queues here
#: instead of taking memory and every thread of the loop's default executor.
WORKERS = 2

_pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="passwords")


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    return "$".join(["scrypt", str(N), str(R), str(P), _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(candidate, _unb64(digest))


async def hashed(password: str) -> str:
    """``hash_password`` off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_pool, hash_password, password)


async def verified(password: str, stored: str | None) -> bool:
    """``verify_password`` off the event loop. With no stored hash (an unknown user) it checks
    against a decoy hash of a random password and answers False, so the answer takes as long
    as for a known user and its time does not tell which usernames exist."""
    return await asyncio.get_running_loop().run_in_executor(_pool, _verify_known, password, stored)


def _verify_known(password: str, stored: str | None) -> bool:
    matched = verify_password(password, stored or _decoy())
    return matched and stored is not None


@functools.cache
def _decoy() -> str:
    return hash_password(os.urandom(16).hex())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
