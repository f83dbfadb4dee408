"""The object store's API (S3; SeaweedFS in ``./dev``), as our services use it: presigned
URLs that clients upload and download with directly, and the few calls a service makes itself
(create the bucket, set its CORS rules, delete an object). Requests are signed with AWS
Signature Version 4 using the standard library: the signing is a few HMACs, and an SDK would
bring a second HTTP stack for four calls.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import aiohttp

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"


@dataclass(frozen=True)
class ObjectStoreAccess:
    #: Where our services reach the store, e.g. ``http://127.0.0.1:8333``.
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    #: Where clients reach it (presigned URLs name it; the signature covers the host); ""
    #: for ``endpoint``.
    public_endpoint: str = ""
    region: str = "us-east-1"


class ObjectStoreError(Exception):
    """The store refused a call or could not be reached."""


def _encode(value: str, safe: str = "-_.~") -> str:
    return quote(value, safe=safe)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class ObjectStore:
    def __init__(self, access: ObjectStoreAccess) -> None:
        self.access = access
        self._host = urlsplit(access.endpoint).netloc
        self._public = access.public_endpoint or access.endpoint
        self._public_host = urlsplit(self._public).netloc

    def _path(self, key: str) -> str:
        return f"/{self.access.bucket}/{_encode(key, '-_.~/')}" if key else f"/{self.access.bucket}"

    def _signature(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        payload: str,
        at: datetime,
    ) -> tuple[str, str]:
        """(signature, the signed headers' names) of a request."""
        stamp = at.strftime("%Y%m%dT%H%M%SZ")
        scope = f"{at:%Y%m%d}/{self.access.region}/s3/aws4_request"
        names = sorted(headers)
        canonical = "\n".join(
            [
                method,
                path,
                "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(query.items())),
                "".join(f"{name}:{headers[name].strip()}\n" for name in names),
                ";".join(names),
                payload,
            ]
        )
        to_sign = "\n".join(
            [ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = _hmac(f"AWS4{self.access.secret_key}".encode(), f"{at:%Y%m%d}")
        for part in (self.access.region, "s3", "aws4_request"):
            key = _hmac(key, part)
        return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), ";".join(names)

    def presign(
        self,
        method: str,
        key: str,
        expires_s: int,
        headers: Mapping[str, str] | None = None,
        at: datetime | None = None,
    ) -> str:
        """A URL that lets whoever holds it make this one request until it expires. Headers
        given are signed: the request must carry them with exactly these values (an upload's
        Content-Length and Content-Type, so the store refuses any other size or type)."""
        at = at or datetime.now(UTC)
        signed = {"host": self._public_host, **{k.lower(): v for k, v in (headers or {}).items()}}
        scope = f"{at:%Y%m%d}/{self.access.region}/s3/aws4_request"
        query = {
            "X-Amz-Algorithm": ALGORITHM,
            "X-Amz-Credential": f"{self.access.access_key}/{scope}",
            "X-Amz-Date": at.strftime("%Y%m%dT%H%M%SZ"),
            "X-Amz-Expires": str(expires_s),
            "X-Amz-SignedHeaders": ";".join(sorted(signed)),
        }
        path = self._path(key)
        signature, _ = self._signature(method, path, query, signed, UNSIGNED, at)
        encoded = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(query.items()))
        return f"{self._public}{path}?{encoded}&X-Amz-Signature={signature}"

    async def call(
        self,
        http: aiohttp.ClientSession,
        method: str,
        key: str = "",
        *,
        query: Mapping[str, str] | None = None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """One request signed in its headers, made by a service: (status, body)."""
        at = datetime.now(UTC)
        digest = hashlib.sha256(body).hexdigest()
        signed = {
            "host": self._host,
            "x-amz-content-sha256": digest,
            "x-amz-date": at.strftime("%Y%m%dT%H%M%SZ"),
            **{k.lower(): v for k, v in (headers or {}).items()},
        }
        path = self._path(key)
        signature, names = self._signature(method, path, query or {}, signed, digest, at)
        scope = f"{at:%Y%m%d}/{self.access.region}/s3/aws4_request"
        authorization = (
            f"{ALGORITHM} Credential={self.access.access_key}/{scope}, "
            f"SignedHeaders={names}, Signature={signature}"
        )
        sent = {k: v for k, v in signed.items() if k != "host"}
        url = f"{self.access.endpoint}{path}"
        try:
            async with http.request(
                method,
                url,
                params=dict(query or {}),
                data=body,
                headers={**sent, "Authorization": authorization},
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise ObjectStoreError(f"object store at {self.access.endpoint}: {exc}") from exc

    async def ensure_bucket(self, http: aiohttp.ClientSession, origins: list[str]) -> None:
        """Create the bucket if it is missing, and let browsers from ``origins`` upload and
        download with presigned URLs (CORS)."""
        status, body = await self.call(http, "PUT")
        if status not in (200, 409):
            raise ObjectStoreError(f"creating bucket {self.access.bucket}: {status} {body!r}")
        rules = "".join(f"<AllowedOrigin>{origin}</AllowedOrigin>" for origin in origins)
        cors = (
            "<CORSConfiguration><CORSRule>"
            f"{rules}<AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod>"
            "<AllowedHeader>*</AllowedHeader><MaxAgeSeconds>3600</MaxAgeSeconds>"
            "</CORSRule></CORSConfiguration>"
        ).encode()
        md5 = base64.b64encode(hashlib.md5(cors).digest()).decode()  # noqa: S324 - S3 asks it
        status, body = await self.call(
            http, "PUT", query={"cors": ""}, body=cors, headers={"content-md5": md5}
        )
        if status != 200:
            raise ObjectStoreError(f"setting the bucket's CORS rules: {status} {body!r}")

    async def exists(self, http: aiohttp.ClientSession, key: str) -> bool:
        status, body = await self.call(http, "HEAD", key)
        if status not in (200, 404):
            raise ObjectStoreError(f"looking for {key}: {status} {body!r}")
        return status == 200

    async def delete(self, http: aiohttp.ClientSession, key: str) -> None:
        status, body = await self.call(http, "DELETE", key)
        if status not in (200, 204, 404):
            raise ObjectStoreError(f"deleting {key}: {status} {body!r}")
