"""ratchet's HTTP API and web console: ``create_app(client, agents=..., auth=...)``.

``ratchet serve --app module:agents`` serves it with uvicorn; mount the app in an
existing ASGI application to serve it there. Endpoints are under ``/v1`` (the
OpenAPI document is ``/v1/openapi.json``); the console is at ``/``; each agent is an
A2A agent at ``/a2a/NAME`` (``ratchet.a2a``), behind the same credentials.

Modules: ``_app`` (the factory), ``_auth`` (who is asking, and may they), ``_roles``
(roles and principals), ``_keys`` (the API key store), ``_oidc`` (JWT bearer tokens),
``_sessions`` (console sessions, CSRF, the login rate limit), ``_problems`` (errors
as problem+json), ``_schemas`` (request and response bodies), ``_sse`` (event
streams), ``_agui`` (run events as AG-UI events), ``_routes`` (one module per resource).
"""

from ._app import APPROVAL_SECRET_ENV, create_app
from ._auth import AuthSettings
from ._keys import KEYS_ENV, ApiKey, KeyStore, default_keys_path
from ._oidc import OidcSettings
from ._problems import Problem
from ._roles import ROLES, Principal, Role

__all__ = [
    "APPROVAL_SECRET_ENV",
    "KEYS_ENV",
    "ROLES",
    "ApiKey",
    "AuthSettings",
    "KeyStore",
    "OidcSettings",
    "Principal",
    "Problem",
    "Role",
    "create_app",
    "default_keys_path",
]
