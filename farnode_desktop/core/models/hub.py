"""A model's ``config.json`` by Hugging Face id, without its weights: from the local cache or the hub.

The one module of the app that talks to the Hugging Face hub (standard library only: the GUI environment
has no ``huggingface_hub``). It reads and writes the hub's own cache layout, so what the app fetched is
what the engine finds later and a cache prepared with ``huggingface-cli download`` is used as is:

``<cache>/models--<org>--<name>/refs/<branch>`` holds the commit; ``snapshots/<commit>/config.json`` is the
file (a relative link into ``blobs/<etag>``).

Environment, as ``huggingface_hub`` reads it: ``HF_HUB_CACHE`` (else ``HF_HOME``/hub, else
``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``), ``HF_HUB_OFFLINE`` (never go to the
network) and ``HF_ENDPOINT`` (the hub's address; tests point it at a local server).

Answers of the hub (``/{repo}/resolve/{revision}/{file}``): 200 with ``X-Repo-Commit``; 401 for a gated
model without a token and for an unknown model without a token (``X-Error-Code: GatedRepo`` or
``RepoNotFound``); 403 ``GatedRepo`` when the token's account has not accepted the licence; 404
``RepoNotFound`` / ``EntryNotFound`` with a token. Each becomes a :class:`HubError` that says what to do.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farnode_desktop import APP_ID, __version__
from farnode_desktop.core.atomic import atomic_write_bytes, atomic_write_text
from farnode_desktop.core.errors import FarNodeError

DEFAULT_ENDPOINT = "https://huggingface.co"
TIMEOUT_S = 10.0
_TRUE = {"1", "on", "yes", "true"}
# An id on the hub: "name" (a few legacy models) or "org/name"; letters, digits, '-', '_', '.'.
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
WEIGHT_INDEX_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                      "pytorch_model.bin")


class HubError(FarNodeError):
    title = "Model not available"


def gated_model_message(repo_id: str, with_token: bool) -> str:
    """The one message for a gated model this node cannot read, whether the app's hub check found it or the
    engine did (a config already in the cache, the token removed since)."""
    page = model_page(repo_id)
    if with_token:
        return (f"{repo_id} is a gated model and your Hugging Face account has no access to it yet: accept the "
                f"licence at {page} with the account your token belongs to (approval can take a while), then "
                "start again.")
    return (f"{repo_id} is a gated model: accept the licence at {page}, then add a Hugging Face access token in "
            "Settings > Network (or `farnode-desktop hf-token set`).")


class GatedModelError(HubError):
    title = "Gated model"


class ModelNotFoundError(HubError):
    title = "No such model"


class HubOfflineError(HubError):
    title = "Offline"


class TokenRejectedError(HubError):
    title = "Hugging Face token refused"


# ------------------------------------------------------------------------------------------ environment
def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_cache_dir() -> Path:
    """Where ``huggingface_hub`` keeps downloaded models (the same rules as its ``constants``)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def is_hub_id(model: str) -> bool:
    """True for a name that means a model on the hub (``org/name``), False for a folder on this computer."""
    m = model.strip()
    if not m or m.startswith(("/", "\\", "~", ".")) or (len(m) > 1 and m[1] == ":"):
        return False
    return bool(_REPO_ID.match(m)) and not Path(m).expanduser().is_dir()


def model_page(repo_id: str) -> str:
    """The model's page on the hub (where its licence is accepted)."""
    return f"{hub_endpoint()}/{repo_id}"


def repo_folder(repo_id: str, cache: Path | None = None) -> Path:
    return (cache or hub_cache_dir()) / ("models--" + repo_id.replace("/", "--"))


# ------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class ModelConfig:
    """A model's configuration and where it came from."""

    model: str  # the id (or folder) as the user gave it
    config: dict[str, Any]
    source: str  # "folder", "cache" (the Hugging Face cache) or "hub"
    path: Path | None = None  # the config.json read, when it is a file
    commit: str = ""

    @property
    def torch_dtype(self) -> str:
        """The dtype the model's weights were published in ("" when the config does not say)."""
        value = self.config.get("torch_dtype") or ""
        return value if isinstance(value, str) else ""


def cached_config_path(repo_id: str, revision: str = "main", cache: Path | None = None) -> Path | None:
    """The model's ``config.json`` in the Hugging Face cache for ``revision``, or None."""
    folder = repo_folder(repo_id, cache)
    if _COMMIT.match(revision):
        commit = revision
    else:
        try:
            commit = (folder / "refs" / revision).read_text().strip()
        except OSError:
            return None
    path = folder / "snapshots" / commit / "config.json"
    return path if path.is_file() else None


def cached_weights(repo_id: str, revision: str = "main", cache: Path | None = None) -> bool:
    """True when the cache's snapshot of ``revision`` holds the model's weights (their index or the file)."""
    config = cached_config_path(repo_id, revision, cache)
    return config is not None and any((config.parent / f).is_file() for f in WEIGHT_INDEX_FILES)


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of a URL (the port made explicit), what a credential is bound to."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


class _TokenStaysHome(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib, but sends the ``Authorization`` header on only while the redirect stays on
    the scheme, host and port the request was made to (urllib copies every header to any host: a redirect
    to a CDN or another site would receive the Hugging Face token). The same rule as ``requests``."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(new.full_url) != _origin(req.full_url):
            for name in [k for k in new.headers if k.lower() == "authorization"]:
                del new.headers[name]
            for name in [k for k in new.unredirected_hdrs if k.lower() == "authorization"]:
                del new.unredirected_hdrs[name]
        return new


_OPENER = urllib.request.build_opener(_TokenStaysHome)


def _read_json_file(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HubError(f"Cannot read {what} ({path}): {exc.strerror or exc}.") from exc
    except ValueError as exc:
        raise HubError(f"{what} ({path}) is not valid JSON ({exc}). Delete it and fetch the model again.") from exc
    if not isinstance(data, dict):
        raise HubError(f"{what} ({path}) is not a JSON object. Delete it and fetch the model again.")
    return data


# ------------------------------------------------------------------------------------------ the client
class HubClient:
    """Reads model configurations; ``token`` returns the Hugging Face token (None: anonymous). Blocking
    (network, up to ``timeout`` seconds): call it off the GUI thread."""

    def __init__(self, token: Callable[[], str | None] | None = None, *, timeout: float = TIMEOUT_S,
                 cache: Path | None = None):
        self._token = token or (lambda: None)
        self.timeout = timeout
        self._cache = cache

    @property
    def cache(self) -> Path:
        return self._cache or hub_cache_dir()

    def model_config(self, model: str, revision: str = "main") -> ModelConfig:
        """The configuration of a model: a folder on this computer, or a hub id (cache first, then the hub
        unless ``HF_HUB_OFFLINE`` is set). Raises :class:`HubError` subclasses with what to do."""
        model = model.strip()
        if not model:
            raise HubError("No model is set. Choose one in Settings > Network.", title="No model")
        folder = Path(model).expanduser()
        if folder.is_dir():
            path = folder / "config.json"
            if not path.is_file():
                raise ModelNotFoundError(f"The model folder {folder} has no config.json. Choose the folder that "
                                         "holds the model's config.json and weights.")
            return ModelConfig(model, _read_json_file(path, "The model's config.json"), "folder", path)
        if not is_hub_id(model):
            raise ModelNotFoundError(f"{model!r} is neither a folder on this computer nor a Hugging Face model id "
                                     "(like meta-llama/Meta-Llama-3.1-8B). Check the model name in Settings > "
                                     "Network.")
        cached = cached_config_path(model, revision, self.cache)
        if cached is not None:
            return ModelConfig(model, _read_json_file(cached, "The cached config.json"), "cache", cached,
                               cached.parent.name)
        if hub_offline():
            raise HubOfflineError(
                f"The configuration of {model} is not in the Hugging Face cache ({self.cache}), and HF_HUB_OFFLINE "
                "is set, so it cannot be downloaded. Unset HF_HUB_OFFLINE, or download the model on a computer "
                f"with internet access (huggingface-cli download {model}) and copy the cache here.")
        data, headers = self._get(model, f"{_quote_id(model)}/resolve/{urllib.parse.quote(revision)}/config.json")
        try:
            config = json.loads(data)
        except ValueError as exc:
            raise HubError(f"The hub sent a config.json for {model} that is not valid JSON ({exc}). Try again "
                           "later.") from exc
        if not isinstance(config, dict):
            raise HubError(f"The hub sent a config.json for {model} that is not a JSON object.")
        commit = headers.get("X-Repo-Commit", "")
        path = self._store(model, revision, commit, headers, data)
        return ModelConfig(model, config, "hub", path, commit)

    def whoami(self, token: str) -> str:
        """The account name of a token (``/api/whoami-v2``). Raises :class:`TokenRejectedError` when the
        hub refuses it, :class:`HubOfflineError` when the hub cannot be reached."""
        data, _ = self._get("", "api/whoami-v2", token=token)
        try:
            info = json.loads(data)
        except ValueError:
            info = {}
        return str(info.get("name") or "") if isinstance(info, dict) else ""

    # -- HTTP ----------------------------------------------------------------------------------------
    def _get(self, repo_id: str, path: str, *, token: str | None = None) -> tuple[bytes, Any]:
        url = f"{hub_endpoint()}/{path}"
        token = token if token is not None else self._token()
        headers = {"User-Agent": f"{APP_ID}/{__version__}; python-urllib"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(url, headers=headers)
        try:
            with _OPENER.open(request, timeout=self.timeout) as resp:
                return resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            raise self._http_error(repo_id, exc, bool(token)) from None
        except OSError as exc:  # URLError, timeouts, refused connections
            reason = getattr(exc, "reason", exc)
            raise HubOfflineError(
                f"Cannot reach the Hugging Face hub at {hub_endpoint()} ({reason}). Check your internet "
                "connection and try again; a model already in the Hugging Face cache "
                f"({self.cache}) works offline.") from None

    def _http_error(self, repo_id: str, exc: urllib.error.HTTPError, with_token: bool) -> HubError:
        code = exc.code
        error_code = exc.headers.get("X-Error-Code", "") if exc.headers else ""
        server_message = (exc.headers.get("X-Error-Message", "") if exc.headers else "")[:200]
        try:
            exc.close()
        except Exception:  # noqa: BLE001 - closing a failed response is best effort
            pass
        if not repo_id:  # the token check
            if code in (401, 403):
                return TokenRejectedError("The Hugging Face hub refused this token (it is wrong, expired or "
                                          "revoked). Create a new one at "
                                          f"{hub_endpoint()}/settings/tokens (read access is enough) and add it "
                                          "again.")
            return HubError(f"The Hugging Face hub answered {code} while checking the token. Try again later.")
        page = model_page(repo_id)
        if error_code == "GatedRepo" or (code == 403 and error_code != "RepoNotFound"):
            return GatedModelError(gated_model_message(repo_id, with_token))
        if error_code == "EntryNotFound":
            return ModelNotFoundError(f"{repo_id} has no config.json on the Hugging Face hub, so it is not a "
                                      "model FarNode can serve. Check the model id in Settings > Network.")
        if code == 404 or error_code == "RepoNotFound" or error_code == "RevisionNotFound":
            private = "" if with_token else " (or it is private: then add a Hugging Face token that can read it)"
            return ModelNotFoundError(f"There is no model {repo_id} on the Hugging Face hub{private}. Check the "
                                      f"model id (as shown at {hub_endpoint()}/models) in Settings > Network.")
        if code == 401:
            if with_token:
                return TokenRejectedError(
                    f"The Hugging Face hub refused your token for {repo_id} (it is wrong, expired or revoked). "
                    f"Create a new one at {hub_endpoint()}/settings/tokens and add it again.")
            return GatedModelError(
                f"{repo_id} needs a Hugging Face account: accept its licence at {page}, then add a Hugging Face "
                "access token in Settings > Network (or `farnode-desktop hf-token set`).")
        if code == 429:
            return HubError("The Hugging Face hub is limiting requests from this address. Wait a few minutes "
                            "and try again.")
        detail = f": {server_message}" if server_message else ""
        return HubError(f"The Hugging Face hub answered {code} for {repo_id}{detail}. Try again later.")

    # -- cache ---------------------------------------------------------------------------------------
    def _store(self, repo_id: str, revision: str, commit: str, headers: Any, data: bytes) -> Path | None:
        """Keep the file in the hub's cache layout (so the engine finds it). Needs the commit; best effort."""
        if not _COMMIT.match(commit):
            return None
        etag = (headers.get("X-Linked-Etag") or headers.get("ETag") or "").strip()
        etag = etag.removeprefix("W/").strip('"')
        if not re.fullmatch(r"[0-9A-Za-z]{8,128}", etag):
            import hashlib

            etag = hashlib.sha256(data).hexdigest()
        folder = repo_folder(repo_id, self.cache)
        blob = folder / "blobs" / etag
        target = folder / "snapshots" / commit / "config.json"
        try:
            atomic_write_bytes(blob, data, mode=0o644)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                try:
                    os.symlink(os.path.relpath(blob, target.parent), target)
                except OSError:  # no symlinks (Windows without developer mode): a copy, as huggingface_hub does
                    atomic_write_bytes(target, data, mode=0o644)
            if not _COMMIT.match(revision):
                atomic_write_text(folder / "refs" / revision, commit, mode=0o644)
        except FarNodeError:
            return None  # a read-only cache: the configuration is still returned
        return target


def _quote_id(repo_id: str) -> str:
    return "/".join(urllib.parse.quote(p, safe="") for p in repo_id.split("/"))
