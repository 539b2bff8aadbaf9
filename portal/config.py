"""Every PORTAL_* setting, typed, in one place.

The defaults are the embedded setup: a SQLite file under ``instance/`` and
Redis on localhost, so the portal runs with nothing configured. Each setting
is declared once, with its type, default and meaning, so that a configuration
reference can be generated from this module and cannot drift from it.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = PROJECT_ROOT / "instance"


class ConfigError(ValueError):
    """A PORTAL_* variable holds a value of the wrong type."""


def setting(default: Any, doc: str, **kwargs: Any) -> Any:
    """Declare a setting: its default and a one-line meaning for the reference."""
    if callable(default) and not isinstance(default, type):
        return field(default_factory=default, metadata={"doc": doc, **kwargs})
    return field(default=default, metadata={"doc": doc, **kwargs})


def _parse_bool(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name} must be a boolean (true/false, 1/0), got {raw!r}")


def _default_database_url() -> str:
    return f"sqlite:///{INSTANCE_DIR / 'portal.sqlite3'}"


def _default_git_root() -> str:
    return str(INSTANCE_DIR / "git")


@dataclass(frozen=True)
class Settings:
    """The portal's configuration. Field ``foo_bar`` is read from ``PORTAL_FOO_BAR``."""

    secret_key: str = setting(
        "", "Key signing sessions and CSRF tokens. Empty: a random key kept in instance/secret_key.",
        secret=True,
    )
    database_url: str = setting(
        _default_database_url, "SQLAlchemy URL of the database (sqlite:/// or postgresql+psycopg://).",
        secret=True,
    )
    redis_url: str = setting("redis://127.0.0.1:6379/0", "Redis for RQ queues and rate limits.", secret=True)
    rq_async: bool = setting(True, "Run jobs on workers (true) or inline in the request (false, tests only).")
    job_timeout: int = setting(600, "Default time limit of a job, in seconds.")
    job_failure_ttl: int = setting(7 * 24 * 3600, "How long a failed job is kept in Redis, in seconds.")
    job_retries: int = setting(3, "How many times RQ retries a job that raised.")
    scm: str = setting("none", "Source control: none, or a provider name or module:factory (see README).")
    ci: str = setting("none", "CI server: none, or a provider name or module:factory.")
    registry: str = setting("none", "Image registry: none, or a provider name or module:factory.")
    cluster: str = setting("none", "Cluster access: none, or a provider name or module:factory.")
    delivery: str = setting("none", "Delivery (GitOps): none, or a provider name or module:factory.")
    logs: str = setting(
        "none", "Central log store: opensearch, elasticsearch, none (pods' logs from the Kubernetes API), or module:factory.")
    logs_url: str = setting("", "URL of the central Elasticsearch or OpenSearch (PORTAL_LOGS=elasticsearch|opensearch).")
    logs_user: str = setting("", "User for the log store (basic authentication).")
    logs_password: str = setting("", "That user's password.", secret=True)
    logs_api_key: str = setting("", "An Elasticsearch API key, instead of a user and password.", secret=True)
    logs_index: str = setting("fluent-bit*", "Index pattern Fluent Bit writes container logs to.")
    logs_fields: str = setting(
        "", "Field names of the shipped documents where they differ from Fluent Bit's Kubernetes filter, "
        "e.g. namespace=kubernetes.namespace_name.keyword,tiebreaker=log_id.")
    provisioning_attempts: int = setting(5, "Attempts of a provisioning step on transient errors before it fails.")
    provisioning_backoff: float = setting(2.0, "First retry delay of a provisioning step, in seconds; doubles each time.")
    provisioning_backoff_max: float = setting(120.0, "Longest retry delay of a provisioning step, in seconds.")
    provisioning_lease: float = setting(
        60.0, "Seconds a worker's claim on a run lasts without a heartbeat; then another worker resumes it."
    )
    provisioning_sweep_interval: float = setting(15.0, "Seconds between sweeps for runs whose worker died.")
    public_url: str = setting("http://127.0.0.1:5000", "The portal's own URL, for webhooks and links.")
    git_root: str = setting(_default_git_root, "Where the built-in Git host keeps its bare repositories.")
    team_approval: bool = setting(
        False, "Joining a team at sign-up needs a maintainer's approval."
    )
    login_rate_limit: str = setting(
        "5 per minute", "Failed sign-ins allowed per username and client address (Flask-Limiter syntax)."
    )
    ratelimit_storage_url: str = setting(
        "", "Storage of rate-limit counters; empty means the Redis of PORTAL_REDIS_URL.", secret=True
    )
    page_size: int = setting(25, "Rows per page of the list pages.")
    kiosk_cycle_seconds: int = setting(
        20, "Seconds a kiosk shows each team before the next, and between two refreshes of a team board "
        "(a board URL's ?every= overrides it).",
    )
    session_cookie_secure: bool = setting(False, "Send the session cookie over HTTPS only.")
    strict_templates: bool = setting(False, "Fail on undefined template variables (on in development and tests).")
    testing: bool = setting(False, "Test mode: no rate-limit storage in Redis, strict templates.")
    build_on_create: bool = setting(True, "Build (and so deploy) the template's first commit once an application is provisioned.")
    build_poll_interval: float = setting(2.0, "Seconds between two reads of a running build's state and console.")
    build_timeout: int = setting(3600, "Longest a build is followed before the portal gives up on it, in seconds.")
    runner_root: str = setting(
        lambda: str(INSTANCE_DIR / "runner"), "The built-in runner's builds, pip cache, image store and registry records.",
    )
    runner_registry: str = setting(
        "", "URL of the Registry v2 server the built-in runner pushes to (http:// means no TLS), e.g. the testbed's.",
    )
    runner_base_image: str = setting("", "BASE_IMAGE the built-in runner builds the templates on (empty: theirs).")
    runner_timeout: float = setting(900.0, "Longest a build of the built-in runner may take, in seconds.")
    deployer_root: str = setting(
        lambda: str(INSTANCE_DIR / "deployer"),
        "Where the built-in deployer keeps its projects, clusters (credentials included, files 0600) and applications.",
    )
    deployer_helm: str = setting("", "Path of the helm binary the built-in deployer runs (empty: helm on PATH).")
    argocd_kubeconfig: str = setting(
        "", "Kubeconfig file of the central cluster, where Argo CD runs (empty: the portal's in-cluster service account).",
    )
    argocd_namespace: str = setting("argocd", "Namespace of Argo CD in the central cluster.")
    argocd_url: str = setting("", "Argo CD API URL, for Sync now and Refresh (empty: declarative only).")
    argocd_token: str = setting("", "Argo CD API token (an account with applications get, sync).", secret=True)
    deploy_timeout: int = setting(900, "Longest a deployment is watched for sync, health and ready pods, in seconds.")
    environments: str = setting("dev,staging,prod", "The environments of every application, in promotion order.")
    secret_keys: str = setting(
        "", "Fernet keys encrypting stored secrets, comma-separated; the first encrypts (empty: derived from "
        "the secret key).", secret=True,
    )
    http_timeout: float = setting(10.0, "Seconds to wait for GitLab, Jenkins, Nexus and Argo CD on each request.")
    http_retries: int = setting(2, "Retries of an idempotent request to an outside system after a connection error or 5xx.")
    tls_verify: bool = setting(True, "Verify TLS certificates of the outside systems.")
    ca_bundle: str = setting(
        "", "PEM file of the CAs trusted for the outside systems, instead of the system's (empty: the system's); "
        "PORTAL_TLS_VERIFY=false wins over it.",
    )
    gitlab_url: str = setting("", "GitLab base URL, e.g. https://gitlab.example.com (PORTAL_SCM=gitlab).")
    gitlab_token: str = setting("", "GitLab token with the api scope (a group or personal access token).", secret=True)
    gitlab_parent_group: str = setting("portal", "GitLab group under which each team gets its own subgroup.")
    jenkins_url: str = setting("", "Jenkins base URL (PORTAL_CI=jenkins).")
    jenkins_user: str = setting("", "Jenkins user the portal acts as.")
    jenkins_token: str = setting("", "That user's Jenkins API token.", secret=True)
    jenkins_credentials_id: str = setting(
        "gitlab-checkout", "Jenkins credentials id used by pipeline jobs to check out source repositories.",
    )
    nexus_url: str = setting("", "Nexus 3 base URL (PORTAL_REGISTRY=nexus).")
    nexus_user: str = setting("", "Nexus user with rights to manage repositories, roles and users.")
    nexus_password: str = setting("", "That Nexus user's password.", secret=True)
    nexus_docker_url: str = setting(
        "", "Docker Registry v2 endpoint of the teams' Nexus repositories, e.g. https://registry.example.com.",
    )
    cache_stale_seconds: float = setting(
        30.0, "Age past which the cluster cache is stale and a panel lists from the API server itself.")
    cache_watch_seconds: int = setting(300, "How long one watch request of the cluster cache lasts before it is resumed.")
    cache_usage_seconds: float = setting(15.0, "Seconds between two reads of metrics.k8s.io by the cluster cache.")
    cache_direct_seconds: float = setting(
        5.0, "Without a cache, how long one direct LIST of a namespace serves every viewer before the next.")
    panel_refresh_seconds: int = setting(10, "Default refresh interval of the resource panels, in seconds.")
    log_format: str = setting(
        "json", "The portal's log lines on stderr: json (one object a line, with request_id or job_id) or text.")
    log_level: str = setting("INFO", "Lowest level of the log lines written (DEBUG, INFO, WARNING, ERROR).")
    metrics_token: str = setting(
        "", "Bearer token that /metrics asks for (Authorization: Bearer …); empty: /metrics is open.", secret=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read every setting from ``PORTAL_*`` variables, converting to its declared type."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = env_name(f.name)
            if name in environ:
                values[f.name] = _convert(f, environ[name], name)
        return cls(**values)

    def replace(self, overrides: Mapping[str, Any]) -> "Settings":
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **overrides)


def env_name(field_name: str) -> str:
    return "PORTAL_" + field_name.upper()


def _convert(f: dataclasses.Field, raw: str, name: str) -> Any:
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    if kind == "bool":
        return _parse_bool(raw, name)
    if kind in ("int", "float"):
        try:
            return int(raw) if kind == "int" else float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number ({kind}), got {raw!r}") from None
    return raw


def reference() -> list[dict[str, str]]:
    """The configuration reference: one row per setting, for docs and the CLI. Defaults under this checkout
    are shown relative to it (``…/instance``), so that the document is the same on every machine."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        rows.append({
            "name": env_name(f.name),
            "type": str(f.type),
            "default": "(generated)" if f.name == "secret_key" else repr(default).replace(str(PROJECT_ROOT), "…"),
            "doc": f.metadata["doc"],
            "secret": "yes" if f.metadata.get("secret") else "",
        })
    return rows


REFERENCE_DOCUMENT = "docs/configuration.md"


def reference_document() -> str:
    """docs/configuration.md, whole: written by ``flask --app app config-reference``, and compared with this by
    the tests, so that it cannot drift from the settings."""
    lines = [
        "# Configuration reference",
        "",
        "Every setting of the portal is a `PORTAL_*` environment variable, declared once in `portal/config.py`.",
        "This document is generated from it (`.venv/bin/flask --app app config-reference > docs/configuration.md`);",
        "a test fails when the two differ. Booleans take 1/0, true/false, yes/no or on/off; a bad value stops the",
        "portal at start with a message naming the variable. *Secret* settings are never logged or shown back;",
        "in Kubernetes they belong in the chart's Secret (`helm-chart/`).",
        "",
        "| Variable | Type | Default | Secret | Meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in reference():
        doc = row["doc"].replace("|", "\\|")
        lines.append(f"| `{row['name']}` | {row['type']} | `{row['default']}` | {row['secret']} | {doc} |")
    return "\n".join(lines) + "\n"


def prometheus_multiproc_dir() -> str:
    """prometheus_client's own variable, read by the library when it is imported (so not a PORTAL_* setting):
    the folder where each process keeps its figures in multi-process mode; empty when that mode is off."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def instance_secret_key(instance_dir: Path) -> str:
    """A random key created once and kept in the instance folder, for the embedded setup."""
    path = instance_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    tmp = instance_dir / f".secret_key.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    try:
        os.link(tmp, path)  # atomic: a web and a worker process starting together agree on one key
    except FileExistsError:
        key = path.read_text().strip()
    finally:
        tmp.unlink()
    return key
