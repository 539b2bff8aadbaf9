"""Which implementation serves each contract, resolved in one place from the PORTAL_* settings.

A setting is ``none`` (the capability is not configured: its provisioning
steps are skipped, saying so), the name of a provider the portal ships, or an
import path ``module:factory`` called with the Settings (used by the tests'
fakes and by anyone plugging in their own adapter).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from flask import current_app

from portal.config import Settings

KINDS = ("scm", "ci", "registry", "cluster", "delivery", "logs")

# Providers the portal ships, by kind and name: factory import paths called with the Settings.
# The connected (GitLab, Jenkins, Nexus, Argo CD) and built-in providers register here as they arrive.
KNOWN: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
KNOWN["scm"]["gitlab"] = "integrations.gitlab:GitLabSourceControl.from_settings"
KNOWN["scm"]["builtin"] = "integrations.builtin_git:BuiltinGit.from_settings"
KNOWN["ci"]["jenkins"] = "integrations.jenkins:JenkinsCIServer.from_settings"
KNOWN["ci"]["builtin"] = "integrations.builtin_runner:BuiltinRunner.from_settings"
KNOWN["registry"]["nexus"] = "integrations.nexus:NexusImageRegistry.from_settings"
KNOWN["registry"]["plain"] = "integrations.registry_plain:PlainRegistry.from_settings"
KNOWN["cluster"]["kubernetes"] = "integrations.kubernetes:KubernetesConnector.from_settings"
KNOWN["delivery"]["argocd"] = "integrations.argocd:ArgoCDDelivery.from_settings"
KNOWN["delivery"]["builtin"] = "integrations.builtin_deployer:BuiltinDeployer.from_settings"
KNOWN["logs"]["opensearch"] = "integrations.search_logs:OpenSearchLogStore.from_settings"
KNOWN["logs"]["elasticsearch"] = "integrations.search_logs:ElasticsearchLogStore.from_settings"


class ProviderConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Providers:
    scm: Any = None
    ci: Any = None
    registry: Any = None
    cluster: Any = None
    delivery: Any = None
    logs: Any = None

    def get(self, kind: str) -> Any:
        return getattr(self, kind)


def _factory(kind: str, value: str) -> Callable[[Settings], Any] | None:
    if value in ("", "none"):
        return None
    path = KNOWN[kind].get(value, value)
    if ":" not in path:
        known = ", ".join(["none", *KNOWN[kind]])
        raise ProviderConfigError(f"PORTAL_{kind.upper()}={value!r}: use one of {known}, or module:factory")
    module_name, _, attr = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ProviderConfigError(f"PORTAL_{kind.upper()}={value!r} cannot be loaded: {exc}") from exc
    return target


def build_providers(settings: Settings) -> Providers:
    built = {}
    for kind in KINDS:
        factory = _factory(kind, getattr(settings, kind))
        built[kind] = factory(settings) if factory else None
    return Providers(**built)


def current_providers() -> Providers:
    """The providers of the current app, built once per process."""
    app = current_app._get_current_object()
    providers = app.extensions.get("providers")
    if providers is None:
        providers = build_providers(app.config["PORTAL"])
        app.extensions["providers"] = providers
    return providers
