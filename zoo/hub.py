"""Hugging Face Hub downloads into the standard HF cache, with one-line errors for every way they fail.

Settings are read when a call is made, not at import: the endpoint ($HF_ENDPOINT, or https://huggingface.co),
the cache ($HF_HUB_CACHE, else $HF_HOME/hub), offline mode ($HF_HUB_OFFLINE or --offline). Public repos are
fetched with token=False (a stale stored token would turn them into 401s); pass a token for private ones.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from . import hub_checks
from .errors import UserError

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_TIMEOUT = 300.0   # seconds for one pull, all requests and retries together
TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class Hub:
    """Where and how to reach the Hub: endpoint, token (None = anonymous), cache folder, offline."""

    endpoint: str
    token: str | None
    cache_dir: Path
    offline: bool
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_env(cls, endpoint: str | None = None, token: str | None = None, cache_dir: str | None = None,
                 offline: bool = False, timeout: float | None = None) -> "Hub":
        env = os.environ
        endpoint = (endpoint or env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        cache = cache_dir or env.get("HF_HUB_CACHE") or (Path(env["HF_HOME"]) / "hub" if env.get("HF_HOME") else None)
        if cache is None:
            from huggingface_hub import constants  # its default: $XDG_CACHE_HOME or ~/.cache, /huggingface/hub

            cache = constants.HF_HUB_CACHE
        offline = offline or env.get("HF_HUB_OFFLINE", "").lower() in TRUE
        return cls(endpoint, token or None, Path(cache).expanduser(), offline, timeout or DEFAULT_TIMEOUT)

    @property
    def auth(self):
        return self.token or False

    def repo_folder(self, repo: str) -> Path:
        return self.cache_dir / ("models--" + repo.replace("/", "--"))


class Unreachable(UserError):
    """The endpoint could not be reached, or answered with a server error (5xx): not the user's mistake."""


def hub_error(e: Exception, what: str, hub: Hub) -> UserError:
    """Map huggingface_hub's exceptions to one line that says what to do."""
    from huggingface_hub import errors

    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(status, int) and status >= 500:
        return Unreachable(f"{what}: {hub.endpoint} answered {status} (a server error): try again later")
    if not isinstance(e, (errors.HfHubHTTPError, errors.LocalEntryNotFoundError, errors.HFValidationError, OSError)):
        return Unreachable(f"{what}: cannot reach {hub.endpoint} ({type(e).__name__}: {_first_line(e)})")
    if isinstance(e, errors.IncompleteSnapshotError):
        return UserError(f"{what}: the cached download is incomplete; run `zoo pull --force` online")
    if isinstance(e, errors.LocalEntryNotFoundError):
        if hub.offline:
            return UserError(f"{what}: not in the local cache and offline mode is on; run `zoo pull` online first")
        return UserError(f"{what}: cannot reach {hub.endpoint} and nothing is cached ({_first_line(e)})")
    if isinstance(e, errors.RevisionNotFoundError):
        return UserError(f"{what}: no such revision (branch, tag or commit) in the repository")
    if isinstance(e, errors.RemoteEntryNotFoundError):
        return UserError(f"{what}: a file listed by the repository is missing on {hub.endpoint} (404)")
    if isinstance(e, errors.GatedRepoError):
        return UserError(f"{what}: gated repository: accept its terms on the Hub and pass --token")
    if status in (401, 403):
        hint = "the token was refused" if hub.token else "it is private, gated or missing: pass --token"
        return UserError(f"{what}: not authorized ({status}); {hint}")
    if isinstance(e, errors.RepositoryNotFoundError):
        return UserError(f"{what}: no such repository on {hub.endpoint} (404)")
    if isinstance(e, errors.HfHubHTTPError):
        return UserError(f"{what}: the Hub answered {status}: {_first_line(e)}")
    if isinstance(e, errors.HFValidationError):
        return UserError(f"{what}: {_first_line(e)}")
    return UserError(f"{what}: download failed ({type(e).__name__}: {_first_line(e)})")


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def hub_exceptions() -> tuple:
    from huggingface_hub import errors

    transport = []
    for module in ("httpx2", "httpx"):  # huggingface_hub's HTTP client, depending on its version
        try:
            transport.append(__import__(module).HTTPError)
        except ImportError:
            pass
    return (errors.HfHubHTTPError, errors.LocalEntryNotFoundError, errors.HFValidationError, *transport, OSError)


def snapshot(repo: str, revision: str | None, patterns: list[str], hub: Hub, *, force: bool = False,
             what: str | None = None) -> Path:
    """Download (or find in the cache, when offline) the files of repo@revision matching `patterns`."""
    from huggingface_hub import snapshot_download

    from . import __version__

    hub_checks.install()
    what = what or f"{repo}@{revision or 'main'}"
    try:
        return Path(bounded(lambda: snapshot_download(
            repo, revision=revision, allow_patterns=patterns, cache_dir=hub.cache_dir, endpoint=hub.endpoint,
            token=hub.auth, force_download=force, local_files_only=hub.offline, library_name="oneshot-gan",
            library_version=__version__), hub, what))
    except hub_checks.UnsafeResponse as e:
        raise unsafe(e, what, hub.endpoint) from None
    except hub_exceptions() as e:
        raise hub_error(e, what, hub) from None


def current_commit(repo: str, revision: str | None, hub: Hub, what: str) -> str:
    """The commit a branch or tag points to now (one request); Unreachable when the endpoint cannot say."""
    from huggingface_hub import HfApi

    hub_checks.install()
    api = HfApi(endpoint=hub.endpoint, token=hub.auth, library_name="oneshot-gan")
    try:
        return bounded(lambda: api.repo_info(repo, revision=revision or "main"), hub, what).sha
    except hub_checks.UnsafeResponse as e:
        raise unsafe(e, what, hub.endpoint) from None
    except hub_exceptions() as e:
        raise hub_error(e, what, hub) from None


def download_file(repo: str, path: str, revision: str | None, hub: Hub | None, *, endpoint: str | None = None,
                  what: str | None = None) -> Path:
    from huggingface_hub import hf_hub_download

    hub = hub or Hub.from_env()
    hub_checks.install()
    what = what or f"{repo}/{path}"
    try:
        return Path(bounded(lambda: hf_hub_download(repo, path, revision=revision, cache_dir=hub.cache_dir,
                                                    endpoint=endpoint or hub.endpoint, token=hub.auth,
                                                    local_files_only=hub.offline), hub, what))
    except hub_checks.UnsafeResponse as e:
        raise unsafe(e, what, endpoint or hub.endpoint) from None
    except hub_exceptions() as e:
        raise hub_error(e, what, hub) from None


def bounded(call, hub: Hub, what: str):
    """call() with a limit on its total time. huggingface_hub waits without end for a server that accepts the
    connection and never answers, and retries stalled downloads for minutes; the call runs in a daemon thread
    that is abandoned when the limit passes (what it completed stays in the cache, nothing half-written)."""
    result: dict = {}

    def target():
        try:
            result["value"] = call()
        except BaseException as e:  # handed to the caller's thread
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True, name="hub-download")
    thread.start()
    thread.join(hub.timeout)
    if thread.is_alive():
        raise UserError(f"{what}: {hub.endpoint} did not finish answering within {hub.timeout:g} s; try again "
                        "later, or allow longer with --timeout")
    if "error" in result:
        raise result["error"]
    return result["value"]


def unsafe(e: Exception, what: str, endpoint: str) -> UserError:
    return UserError(f"{what}: refused an unsafe answer from {endpoint}: {e}; nothing was written outside the cache")


def cached_commit(repo: str, revision: str, hub: Hub) -> str | None:
    """The commit a cached ref (branch or tag) points to, or the revision itself when it is a commit."""
    from .index import COMMIT

    if COMMIT.match(revision):
        return revision
    ref = hub.repo_folder(repo) / "refs" / revision
    return ref.read_text().strip() if ref.is_file() else None
