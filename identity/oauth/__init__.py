"""The OAuth 2.0 authorization server, as Flask-free services (``identity.web.oauth`` is the HTTP side)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..config import Settings
from ..keys import Keyring
from ..pairwise import PairwiseKey, SubjectMap
from ..store import Store
from ..tokens import TokenMinter
from ..vault import Vault
from .audience_jwks import JwksFetcher, fetch_jwks_with_requests
from .audiences import AudienceRegistry
from .authorize import Authorizer
from .clients import ClientRegistry
from .consent import Consents
from .grants import Grants
from .metadata import DiscoveryDocument
from .subjects import Subjects
from .token_endpoint import TokenEndpoint
from .token_status import TokenStatus


@dataclass
class OAuthServer:
    clients: ClientRegistry
    audiences: AudienceRegistry
    grants: Grants
    minter: TokenMinter
    authorizer: Authorizer
    token_endpoint: TokenEndpoint
    token_status: TokenStatus
    discovery: DiscoveryDocument
    consents: Consents
    subjects: Subjects  # ``subject_for``: the ``sub`` an audience or a client sees


def build_oauth(
    settings: Settings,
    *,
    store: Store,
    vault: Vault,
    keyring: Keyring,
    client_secret_key: bytes,
    clock: Callable[[], float],
    fetch_jwks: JwksFetcher = fetch_jwks_with_requests,
) -> OAuthServer:
    clients = ClientRegistry(store, secret_key=client_secret_key, clock=clock)
    audiences = AudienceRegistry(store, clock=clock, fetch_jwks=fetch_jwks)
    minter = TokenMinter(keyring, issuer=settings.issuer, access_token_ttl=settings.access_token_ttl,
                         id_token_ttl=settings.id_token_ttl)
    subjects = Subjects(key=PairwiseKey(keyring.pairwise_key), subject_map=SubjectMap(store, clock=clock),
                        audiences=audiences, clients=clients)
    grants = Grants(store, minter=minter, subjects=subjects, refresh_ttl=settings.refresh_token_ttl,
                    refresh_idle_ttl=settings.refresh_token_idle_ttl, clock=clock)
    consents = Consents(store, pending_ttl=settings.pending_login_ttl, clock=clock)
    authorizer = Authorizer(store=store, vault=vault, clients=clients, audiences=audiences, issuer=settings.issuer,
                            code_ttl=settings.code_ttl, pending_ttl=settings.pending_login_ttl, clock=clock,
                            consents=consents)
    token_endpoint = TokenEndpoint(store=store, vault=vault, clients=clients, audiences=audiences, grants=grants,
                                   minter=minter, subjects=subjects, access_token_ttl=settings.access_token_ttl,
                                   clock=clock)
    token_status = TokenStatus(vault=vault, clients=clients, grants=grants, subjects=subjects, issuer=settings.issuer,
                               clock=clock)
    discovery = DiscoveryDocument(settings.issuer, clients, clock=clock)
    return OAuthServer(clients, audiences, grants, minter, authorizer, token_endpoint, token_status, discovery,
                       consents, subjects)
