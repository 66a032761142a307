"""A small in-memory server that speaks the part of the Hugging Face Hub protocol that pushing and loading use.

No package provides a Hub server and the real Hub is unreachable in tests, so this one runs on 127.0.0.1 (a free port)
inside the test process; the real `huggingface_hub` client talks to it through `HF_ENDPOINT` (see
shared/docs/HF_NOTES.md for the endpoints). It keeps every commit, so tests can count commits and read what was
uploaded and how (regular file in the commit, or LFS object uploaded with PUT).
"""

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack")
LFS_MIN_SIZE = 10 * 1024 * 1024  # the Hub's limit for regular files


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class StoredFile:
    data: bytes
    lfs: bool

    @property
    def oid(self) -> str:
        """What the preupload endpoint reports and the client compares with: sha256 for LFS, git sha1 otherwise."""
        return hashlib.sha256(self.data).hexdigest() if self.lfs else git_sha1(self.data)


@dataclass
class Commit:
    sha: str
    message: str
    files: dict  # path -> StoredFile
    regular_paths: list = field(default_factory=list)  # how each file of this commit arrived
    lfs_paths: list = field(default_factory=list)


@dataclass
class HubState:
    repos: dict = field(default_factory=dict)  # repo id -> list[Commit], oldest first
    lfs_objects: dict = field(default_factory=dict)  # sha256 -> bytes
    unhandled: list = field(default_factory=list)  # requests this server does not implement (for debugging)

    def head(self, repo_id: str) -> Commit:
        return self.repos[repo_id][-1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client expects
    state: HubState
    base_url: str

    def log_message(self, format, *args):  # quiet test output
        pass

    # ------------------------------------------------------------------------------------------ helpers
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload, headers=None):
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(self, status: int, code: str, message: str):
        self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

    def _unhandled(self):
        self.state.unhandled.append(f"{self.command} {self.path}")
        self._error(404, "EntryNotFound", f"not implemented by the test server: {self.command} {self.path}")

    def _commit_for(self, repo_id: str, revision: str) -> Commit | None:
        commits = self.state.repos.get(repo_id)
        if not commits:
            return None
        if revision in ("main", "HEAD"):
            return commits[-1]
        return next((commit for commit in commits if commit.sha == revision), None)

    # ------------------------------------------------------------------------------------------ routes
    def do_POST(self):
        body = self._body()
        path = unquote(urlparse(self.path).path)
        if path == "/api/repos/create":
            payload = json.loads(body)
            repo_id = "/".join(part for part in (payload.get("organization"), payload["name"]) if part)
            url = f"{self.base_url}/{repo_id}"
            if repo_id in self.state.repos:
                return self._json(409, {"error": "You already created this model repo", "url": url})
            self.state.repos[repo_id] = [
                Commit(sha=hashlib.sha1(repo_id.encode()).hexdigest(), message="initial", files={})
            ]
            return self._json(200, {"url": url, "name": repo_id})
        if path == "/api/validate-yaml":
            return self._json(200, {"errors": [], "warnings": []})
        if path.endswith(".git/info/lfs/objects/batch"):
            objects = []
            for obj in json.loads(body)["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"]}
                if obj["oid"] not in self.state.lfs_objects:
                    entry["actions"] = {"upload": {"href": f"{self.base_url}/lfs-upload/{obj['oid']}", "header": {}}}
                objects.append(entry)
            return self._send(
                200,
                json.dumps({"objects": objects, "transfer": "basic"}).encode(),
                content_type="application/vnd.git-lfs+json",
            )
        if path.startswith("/api/models/") and "/preupload/" in path:
            repo_id, revision = path[len("/api/models/") :].split("/preupload/")
            commit = self._commit_for(repo_id, revision)
            if commit is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            files = []
            for item in json.loads(body)["files"]:
                lfs = item["path"].endswith(LFS_SUFFIXES) or item["size"] >= LFS_MIN_SIZE
                entry = {"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
                if item["path"] in commit.files:
                    entry["oid"] = commit.files[item["path"]].oid
                files.append(entry)
            return self._json(200, {"files": files, "commitOid": commit.sha})
        if path.startswith("/api/models/") and "/commit/" in path:
            repo_id, revision = path[len("/api/models/") :].split("/commit/")
            return self._commit(repo_id, revision, body)
        return self._unhandled()

    def _commit(self, repo_id: str, revision: str, body: bytes):
        parent = self._commit_for(repo_id, revision)
        if parent is None:
            return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
        files, regular, lfs, message = dict(parent.files), [], [], ""
        for line in body.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value.get("summary", "")
            elif key == "file":
                files[value["path"]] = StoredFile(base64.b64decode(value["content"]), lfs=False)
                regular.append(value["path"])
            elif key == "lfsFile":
                if value["oid"] not in self.state.lfs_objects:
                    return self._error(400, "BadRequest", f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = StoredFile(self.state.lfs_objects[value["oid"]], lfs=True)
                lfs.append(value["path"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            else:
                return self._error(400, "BadRequest", f"unsupported commit operation {key!r}")
        digest = hashlib.sha1(parent.sha.encode())
        for path_in_repo in sorted(files):
            digest.update(path_in_repo.encode() + files[path_in_repo].oid.encode())
        commit = Commit(sha=digest.hexdigest(), message=message, files=files, regular_paths=regular, lfs_paths=lfs)
        self.state.repos[repo_id].append(commit)
        return self._json(
            200,
            {
                "commitOid": commit.sha,
                "commitUrl": f"{self.base_url}/{repo_id}/commit/{commit.sha}",
                "success": True,
                "pullRequestUrl": None,
            },
        )

    def do_PUT(self):
        body = self._body()
        path = urlparse(self.path).path
        if path.startswith("/lfs-upload/"):
            oid = path.rsplit("/", 1)[1]
            if hashlib.sha256(body).hexdigest() != oid:
                return self._error(400, "BadRequest", "LFS upload does not match its sha256")
            self.state.lfs_objects[oid] = body
            return self._send(200)
        return self._unhandled()

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self._body()
        path = unquote(urlparse(self.path).path)
        if path.startswith("/api/models/"):
            return self._api_model(path[len("/api/models/") :])
        if "/resolve/" in path:
            repo_id, rest = path.lstrip("/").split("/resolve/", 1)
            revision, _, file_path = rest.partition("/")
            return self._resolve(repo_id, revision, file_path)
        return self._unhandled()

    def _api_model(self, rest: str):
        repo_id, revision, tree_path = rest, "main", None
        if "/revision/" in rest:
            repo_id, revision = rest.split("/revision/", 1)
        elif "/tree/" in rest:
            repo_id, tree = rest.split("/tree/", 1)
            revision, _, tree_path = tree.partition("/")
        commit = self._commit_for(repo_id, revision)
        if commit is None:
            if repo_id in self.state.repos:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
        if tree_path is not None:
            prefix = tree_path.strip("/") + "/" if tree_path.strip("/") else ""
            entries = [
                {"type": "file", "path": p, "size": len(f.data), "oid": git_sha1(f.data)}
                for p, f in sorted(commit.files.items())
                if p.startswith(prefix) and "/" not in p[len(prefix) :]
            ]
            if prefix and not entries:
                return self._error(404, "EntryNotFound", f"{tree_path} does not exist on {revision}")
            return self._json(200, entries)
        return self._json(
            200,
            {
                "id": repo_id,
                "modelId": repo_id,
                "sha": commit.sha,
                "private": False,
                "tags": [],
                "siblings": [{"rfilename": p} for p in sorted(commit.files)],
            },
        )

    def _resolve(self, repo_id: str, revision: str, file_path: str):
        commit = self._commit_for(repo_id, revision)
        if commit is None:
            if repo_id in self.state.repos:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
        stored = commit.files.get(file_path)
        if stored is None:
            return self._error(404, "EntryNotFound", f"{file_path} does not exist on {revision}")
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{git_sha1(stored.data)}"'}
        if stored.lfs:
            headers.update({"X-Linked-Etag": f'"{stored.oid}"', "X-Linked-Size": str(len(stored.data))})
        self._send(200, stored.data, headers, content_type="application/octet-stream")


class HubServer:
    """`with HubServer() as hub:` serves on `hub.url` until the block ends; `hub.state` holds the repos."""

    def __init__(self):
        self.state = HubState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        handler.base_url = self.url
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
