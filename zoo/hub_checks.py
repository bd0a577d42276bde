"""Every answer of a Hub endpoint is checked before huggingface_hub turns any part of it into a path.

huggingface_hub builds cache paths from what the server sends: `blobs/<ETag>`, `snapshots/<X-Repo-Commit>`,
`.no_exist/<X-Repo-Commit>/...`, `trees/<sha>.json`, and file names from the repository listing. Version 2.4
does not check them, so a hostile endpoint ($HF_ENDPOINT pointing at a mirror, or plain http anywhere on the
way) could write its bytes wherever the user can write. `install()` adds a response hook to huggingface_hub's
HTTP client (its documented `set_client_factory`) that refuses any such value unlike what the Hub sends:
commits are 40 hex digits, ETags 40 (git blob) or 64 (sha256) hex digits, Xet hashes 64, listed file names
relative paths without `..`. The hook runs on the very response huggingface_hub then uses, so a server that
answers differently on a second request gains nothing.
"""

from __future__ import annotations

import json
import re
import threading

from .errors import UserError
from .index import check_member_name

COMMIT = re.compile(r"[0-9a-f]{40}")
BLOB_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
SHA256 = re.compile(r"[0-9a-f]{64}")
_lock = threading.Lock()
_installed = False


class UnsafeResponse(Exception):
    """A Hub endpoint sent a value that would become a path outside the cache (or an invalid one)."""


def install() -> None:
    """Put the check into huggingface_hub's shared HTTP client (once per process)."""
    global _installed
    with _lock:
        if _installed:
            return
        from huggingface_hub import set_client_factory
        from huggingface_hub.utils import _http

        # wrap the factory in place (a user's proxy or certificate settings stay); huggingface_hub has no getter
        previous = getattr(_http, "_GLOBAL_CLIENT_FACTORY", _http.default_client_factory)

        def factory():
            client = previous()
            client.event_hooks["response"] = [*client.event_hooks.get("response", []), check_response]
            return client

        set_client_factory(factory)
        _installed = True


def check_response(response) -> None:
    """The response hook: raise UnsafeResponse for a header or listing field that is not what the Hub sends."""
    url = str(response.request.url)
    headers = response.headers
    commit = headers.get("X-Repo-Commit")
    if commit is not None and not COMMIT.fullmatch(commit):
        _refuse(url, f"X-Repo-Commit {commit!r} is not a commit hash")
    if response.request.method == "HEAD" and response.status_code < 400:
        # the value huggingface_hub uses, normalised as it does (file_download._normalize_etag)
        etag = headers.get("X-Linked-Etag") or headers.get("ETag")
        if etag is not None and not BLOB_ID.fullmatch(etag.lstrip("W/").strip('"')):
            _refuse(url, f"ETag {etag!r} is not a blob id")
    xet = headers.get("X-Xet-Hash")
    if xet is not None and not SHA256.fullmatch(xet):
        _refuse(url, f"X-Xet-Hash {xet!r} is not a Xet hash")
    path = response.request.url.path
    if "/api/" in path and "/resolve/" not in path and response.status_code < 300 \
            and "json" in headers.get("Content-Type", ""):
        response.read()
        try:
            body = json.loads(response.content)
        except ValueError:
            return   # huggingface_hub reports unreadable JSON itself
        _check_listing(url, body)


def _check_listing(url: str, body) -> None:
    """Repository info ({"sha", "siblings": [{"rfilename"}]}) and tree / paths-info listings
    ([{"path", "oid", "lfs": {"oid"}, "xetHash"}])."""
    if isinstance(body, dict):
        if "sha" in body and not (isinstance(body["sha"], str) and COMMIT.fullmatch(body["sha"])):
            _refuse(url, f"commit {body['sha']!r} is not a commit hash")
        for item in body.get("siblings") or []:
            if isinstance(item, dict):
                _check_name(url, item.get("rfilename"))
    elif isinstance(body, list):
        for item in body:
            if not isinstance(item, dict):
                continue
            _check_name(url, item.get("path"))
            _check_id(url, item.get("oid"), BLOB_ID, "blob id")
            lfs = item.get("lfs")
            if isinstance(lfs, dict):
                _check_id(url, lfs.get("oid", lfs.get("sha256")), SHA256, "sha256")
            _check_id(url, item.get("xetHash"), SHA256, "Xet hash")


def _check_id(url: str, value, pattern: re.Pattern, what: str) -> None:
    if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
        _refuse(url, f"{value!r} is not a {what}")


def _check_name(url: str, name) -> None:
    if name is None:
        return
    try:
        check_member_name(name, url)
    except UserError:
        _refuse(url, f"file name {name!r} is not a plain path inside the repository")


def _refuse(url: str, what: str) -> None:
    raise UnsafeResponse(f"{what} (from {url})")
