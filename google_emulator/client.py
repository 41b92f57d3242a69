"""Build real google-api-python-client services aimed at an emulator (or any root URL)."""

from __future__ import annotations

import google_auth_httplib2
import httplib2
from google.auth.credentials import Credentials as BaseCredentials
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import Resource, build_from_document

from jobs.google.client import discovery_document


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
