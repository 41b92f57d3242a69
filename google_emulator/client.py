"""Build real google-api-python-client services aimed at an emulator (or any root URL)."""

from __future__ import annotations

import json

import google_auth_httplib2
import httplib2
from google.auth.credentials import Credentials as BaseCredentials
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import Resource, build_from_document
from googleapiclient.discovery_cache import get_static_doc


def discovery_document(api: str, version: str, root_url: str) -> str:
    """The library's bundled discovery document with its rootUrl pointed at `root_url`."""
    text = get_static_doc(api, version)
    if text is None:
        raise LookupError(f"no static discovery document for {api} {version}")
    document = json.loads(text)
    document["rootUrl"] = root_url
    return json.dumps(document)


def build_service(
    api: str,
    version: str,
    root_url: str,
    *,
    credentials: BaseCredentials | None = None,
    timeout: float = 10.0,
) -> Resource:
    """A service whose requests (and batches) go to `root_url` over httplib2 with `timeout`."""
    credentials = credentials or Credentials(token="emulator-token")
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=timeout))
    return build_from_document(discovery_document(api, version, root_url), http=http)
