"""A small fake Hugging Face Hub on 127.0.0.1, enough for the real huggingface_hub client's downloads.

Answers `GET /api/models/{repo}/revision/{rev}`, `GET /api/models/{repo}/tree/{sha}` and
`HEAD|GET /{repo}/resolve/{rev}/{path}`, with the Hub's headers and error codes, and logs every request.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    commits: dict = field(default_factory=dict)   # sha -> {path: bytes}
    refs: dict = field(default_factory=dict)      # branch/tag -> sha
    token: str | None = None                      # private: this bearer token is required
    missing: set = field(default_factory=set)     # listed in the tree but answering 404


class FakeHub:
    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.served: dict[str, bytes] = {}        # overrides: "repo/path" -> bytes served instead (tampering)
        self.status: int | None = None   # answer everything with this error status (a server in trouble)
        self.hang = 0.0       # seconds to wait before answering anything (a server that accepts and stalls)
        self.hostile: dict = {}   # a malicious server: header name -> value on resolve answers (404s included),
                                  # "sha" -> the API's commit, "tree" -> {field: value} on every tree item
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._answer(self, body=False)

            def do_GET(self):
                hub._answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # -- content ---------------------------------------------------------------------------------------------
    def commit(self, repo: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Add a commit holding exactly `files` on `branch`; returns its sha."""
        r = self.repos.setdefault(repo, Repo())
        sha = hashlib.sha1(json.dumps([repo, len(r.commits), sorted(files)]).encode()).hexdigest()
        r.commits[sha] = dict(files)
        r.refs[branch] = sha
        return sha

    def commit_folder(self, repo: str, folder: Path, branch: str = "main") -> str:
        files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return self.commit(repo, files, branch)

    def paths(self, kind: str | None = None) -> list[str]:
        return [p for m, p in self.requests if kind is None or m == kind]

    # -- HTTP ------------------------------------------------------------------------------------------------
    def _answer(self, h: BaseHTTPRequestHandler, body: bool):
        path = unquote(urlsplit(h.path).path)
        self.requests.append((h.command, path))
        if self.hang:
            time.sleep(self.hang)
        if self.status:
            return self._error(h, self.status, None, "server error")
        if path.startswith("/api/models/"):
            return self._api(h, path[len("/api/models/"):])
        parts = path.strip("/").split("/")
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(h, "/".join(parts[:2]), parts[3], "/".join(parts[4:]), body)
        self._error(h, 404, None)

    def _repo(self, h, name: str) -> Repo | None:
        repo = self.repos.get(name)
        if repo is None:
            self._error(h, 404, "RepoNotFound")
            return None
        if repo.token and h.headers.get("authorization") != f"Bearer {repo.token}":
            given = h.headers.get("authorization")
            self._error(h, 401, None if given else "RepoNotFound",
                        "Invalid credentials in Authorization header" if given else "Unauthorized")
            return None
        return repo

    def _sha(self, h, repo: Repo, rev: str) -> str | None:
        sha = repo.refs.get(rev) or (rev if rev in repo.commits else None)
        if sha is None:
            self._error(h, 404, "RevisionNotFound")
        return sha

    def _api(self, h, rest: str):
        name, _, tail = rest.partition("/revision/") if "/revision/" in rest else rest.partition("/tree/")
        repo = self._repo(h, name)
        if repo is None:
            return
        rev = tail.split("/")[0]
        sha = self._sha(h, repo, rev)
        if sha is None:
            return
        files = repo.commits[sha]
        if "/revision/" in rest:
            data = {"id": name, "sha": self.hostile.get("sha", sha), "private": bool(repo.token),
                    "siblings": [{"rfilename": p} for p in sorted(files)]}
        else:
            data = [{"type": "file", "path": p, "size": len(b), "oid": git_blob_sha(b), **self.hostile.get("tree", {})}
                    for p, b in sorted(files.items())]
        self._send(h, 200, json.dumps(data).encode(), {"Content-Type": "application/json"}, True)

    def _resolve(self, h, name: str, rev: str, path: str, body: bool):
        repo = self._repo(h, name)
        if repo is None:
            return
        sha = self._sha(h, repo, rev)
        if sha is None:
            return
        files = repo.commits[sha]
        if path not in files or path in repo.missing:
            return self._error(h, 404, "EntryNotFound", headers={"X-Repo-Commit": sha, **self._headers()})
        data = self.served.get(f"{name}/{path}", files[path])
        headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_sha(files[path])}"',
                   "Content-Type": "application/octet-stream", **self._headers()}
        self._send(h, 200, data, headers, body)

    def _headers(self) -> dict:
        return {k: v for k, v in self.hostile.items() if k not in ("sha", "tree")}

    def _error(self, h, status: int, code: str | None, message: str = "error", headers: dict | None = None):
        extra = dict(headers or {})
        if code:
            extra["X-Error-Code"] = code
        extra["X-Error-Message"] = message
        self._send(h, status, json.dumps({"error": message}).encode(), extra, h.command != "HEAD")

    @staticmethod
    def _send(h, status: int, data: bytes, headers: dict, body: bool):
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)
