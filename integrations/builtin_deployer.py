"""The built-in deployer of the embedded mode: the Delivery contract without Argo CD.

It does what Argo CD's controller does for the portal's applications, synchronously and only when asked:
``sync`` and ``refresh``, and ``status`` when the branch has moved since the last sync (auto-sync). A sync
reads the deployment repository at the head of the application's revision from the built-in Git host's
bare repository on this disk, renders the chart with ``helm template <application> <chart> --namespace
<namespace> -f <values file>``, labels every object with Argo CD's tracking label
``app.kubernetes.io/instance: <application>``, applies everything server-side to the destination
cluster (reached with the credentials ``register_cluster`` was given), then prunes the application's
objects the chart no longer renders (``integrations.builtin_deployer_cluster``).

Decisions, and why:

- **Projects are enforced** as Argo CD's AppProjects are: an application whose repository is not among
  its project's ``source_repos`` or whose destination is not among its ``destinations`` is refused by
  ``ensure_application`` (InvalidRequest), and checked again at each sync. Globs: ``*`` matches within
  one path segment (it never crosses a ``/``), and a pattern of just ``*`` allows everything.
- **Auto-sync once per revision.** As in Argo CD, a revision whose automatic sync failed is not tried
  again by ``status`` or ``refresh``, only by an explicit ``sync`` or a new commit: a broken chart is
  rendered once, not at every poll.
- **Failures.** What the repository or the manifests get wrong (helm's error, a kind the API server
  refuses, a namespace that is not there) makes the sync's operation Failed with that message, shown by
  ``status``; ``sync`` does not raise for it. A cluster that cannot be reached or refuses the credentials
  raises the Kubernetes adapter's error from ``sync`` and ``status`` and is not recorded, so the next call
  tries again.
- **Status** follows Argo CD's fields: ``revision`` is the head the application was compared with, sync
  is Synced when that head (with the current spec) is what was last synced successfully, health is the
  application's workloads' (Missing before anything was deployed), history keeps the last ten syncs.
- **One sync at a time per application**: a file lock, held by whoever syncs, changes or deletes it; a
  second caller waits, then finds the work done.
- **State on disk**, credentials included, in files only the portal's user may read
  (``integrations.builtin_deployer_state``).
- **Ownership**: each record keeps its owner; an ``ensure_*`` or ``register_cluster`` of a name another
  owner holds is a Conflict. A cluster is looked up by its API URL for an application's destination; when
  several registrations share one URL, the latest registered is used.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from integrations.builtin_deployer_cluster import CHART_KINDS, containers, health, key, kinds_of, prune
from integrations.builtin_deployer_source import DeploymentSources, SyncFailed, relative_path
from integrations.builtin_deployer_state import SYSTEM, DeployerState, checked_name
from integrations.cluster import ClusterTarget
from integrations.delivery import DeliveryEvent, DeliveryProjectSpec, DeliverySpec, DeliveryStatus, Destination
from integrations.errors import Conflict, InvalidRequest, NotFound
from integrations.kubernetes import WORKLOADS, KubernetesConnector
from integrations.resources import ExternalResource

HISTORY_LIMIT = 10  # Argo CD's default revisionHistoryLimit
# Errors of the cluster that are the manifests' fault, not the connection's: a failed sync, not an exception.
_MANIFEST_ERRORS = (InvalidRequest, NotFound, Conflict)
_WORKLOAD_KINDS = {kind.kind for kind in WORKLOADS}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def glob_match(pattern: str, value: str) -> bool:
    """Argo CD's project globs, stricter: ``*`` and ``?`` never match ``/``; ``*`` alone matches everything."""
    if pattern == "*":
        return True
    regex = "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


class BuiltinDeployer:
    """The Delivery contract in the portal's own process: projects, clusters and applications on disk,
    synced into the team clusters with helm and server-side apply."""

    system = SYSTEM

    def __init__(self, state_dir: Path, git_root: Path, public_url: str, helm: str, timeout: float,
                 field_manager: str = "developer-portal"):
        """``helm``: the helm binary's path ("" for the helm on PATH); ``timeout``: of each Kubernetes request."""
        self.state = DeployerState(Path(state_dir))
        self.sources = DeploymentSources(Path(git_root), public_url, helm)
        self.connector = KubernetesConnector(timeout, field_manager)

    @classmethod
    def from_settings(cls, settings: Any) -> "BuiltinDeployer":
        """The deployer the portal builds from its Settings (``PORTAL_DELIVERY=builtin``)."""
        return cls(state_dir=Path(settings.deployer_root), git_root=Path(settings.git_root),
                   public_url=settings.public_url, helm=settings.deployer_helm, timeout=settings.http_timeout)

    def __repr__(self) -> str:
        return f"BuiltinDeployer(state_dir={str(self.state.root)!r}, helm={self.sources.helm!r})"

    def close(self) -> None:
        self.connector.close()

    # --- projects --------------------------------------------------------------------------------

    def find_project(self, name: str) -> ExternalResource | None:
        """The project, or None."""
        record = self.state.read("projects", name)
        return self._project(record) if record else None

    def ensure_project(self, spec: DeliveryProjectSpec) -> ExternalResource:
        """Create or replace the project ``spec.name``; Conflict when another owner holds that name."""
        self._claim("projects", spec.name, spec.owner)
        record = {"name": spec.name, "owner": spec.owner, "description": spec.description,
                  "source_repos": list(spec.source_repos),
                  "destinations": [asdict(d) for d in spec.destinations]}
        self.state.write("projects", spec.name, record)
        return self._project(record)

    def delete_project(self, name: str) -> None:
        """Forget the project; NotFound when it is gone, Conflict while applications still belong to it."""
        if self.state.read("projects", name) is None:
            raise NotFound(SYSTEM, f"project {name} not found", status=404)
        using = [a["spec"]["name"] for a in self.state.all("applications") if a["spec"]["project"] == name]
        if using:
            raise Conflict(SYSTEM, f"project {name} still has applications: {', '.join(using)}", status=409)
        self.state.remove("projects", name)

    def _project(self, record: dict[str, Any]) -> ExternalResource:
        return ExternalResource(system=SYSTEM, kind="project", external_id=record["name"], name=record["name"],
                                owner=record["owner"], attributes={
                                    "description": record["description"],
                                    "source_repos": ",".join(record["source_repos"]),
                                    "destinations": ",".join(f"{d['server']} {d['namespace']}"
                                                             for d in record["destinations"])})

    # --- clusters --------------------------------------------------------------------------------

    def find_cluster(self, name: str) -> ExternalResource | None:
        """The registered cluster ``name``, or None (never its credentials)."""
        record = self.state.read("clusters", name)
        return self._cluster(record) if record else None

    def register_cluster(self, target: ClusterTarget, owner: str) -> ExternalResource:
        """Keep ``target``, credentials included, as cluster ``target.name``; Conflict when another owner has it."""
        if not target.api_url:
            raise InvalidRequest(SYSTEM, f"cluster {target.name} has no API URL", status=400)
        self._claim("clusters", target.name, owner)
        record = {**asdict(target), "api_url": target.api_url.rstrip("/"), "owner": owner, "registered_at": _now()}
        self.state.write("clusters", target.name, record)
        return self._cluster(record)

    def delete_cluster(self, name: str) -> None:
        """Forget the cluster and its credentials; NotFound when it is gone."""
        if not self.state.remove("clusters", checked_name("cluster", name)):
            raise NotFound(SYSTEM, f"cluster {name} not found", status=404)

    def _cluster(self, record: dict[str, Any]) -> ExternalResource:
        return ExternalResource(system=SYSTEM, kind="cluster", external_id=record["name"], name=record["name"],
                                url=record["api_url"], owner=record["owner"], attributes={
                                    "server": record["api_url"],
                                    "auth": "kubeconfig" if record["kubeconfig"] else "bearer-token",
                                    "registered_at": record["registered_at"]})

    def _target(self, api_url: str) -> ClusterTarget | None:
        """The cluster registered for ``api_url`` (the latest registered, when several are)."""
        found = [r for r in self.state.all("clusters") if r["api_url"] == api_url.rstrip("/")]
        if not found:
            return None
        record = max(found, key=lambda r: r["registered_at"])
        return ClusterTarget(**{f: record[f] for f in ("name", "api_url", "ca_pem", "token", "kubeconfig", "verify")})

    # --- applications ----------------------------------------------------------------------------

    def find_application(self, name: str) -> ExternalResource | None:
        """The application, or None."""
        record = self.state.read("applications", name)
        return self._application(record) if record else None

    def ensure_application(self, spec: DeliverySpec) -> ExternalResource:
        """Create or update the application so that it matches ``spec``; it is synced by the next status,
        refresh or sync. InvalidRequest when its project does not allow its repository or destination."""
        checked_name("application", spec.name)
        relative_path("chart path", spec.path.strip("/"))
        relative_path("values file", spec.values_file)
        self.sources.repository_path(spec.repository_url)
        problem = self._forbidden(spec)
        if problem:
            raise InvalidRequest(SYSTEM, problem, status=400)
        if self._target(spec.cluster) is None:
            raise InvalidRequest(SYSTEM, f"no cluster is registered for {spec.cluster}: register it first", status=400)
        with self.state.locked(spec.name):
            record = self.state.read("applications", spec.name) or {
                "operation": None, "synced": None, "history": [], "kinds": []}
            if "spec" in record and record["spec"]["owner"] != spec.owner:
                raise Conflict(SYSTEM, f"application {spec.name} exists and is not owned by {spec.owner} "
                                       f"(owner: {record['spec']['owner']})", status=409)
            record = {**record, "spec": asdict(spec)}
            self.state.write("applications", spec.name, record)
        return self._application(record)

    def delete_application(self, name: str) -> None:
        """Delete every object the application deployed (those with its instance label), then forget it.

        NotFound when it is gone. When its cluster is no longer registered there is nothing to reach: it is forgotten.
        """
        with self.state.locked(name):
            record = self._record(name)
            spec, synced = self._spec(record), record["synced"] or {}
            # Where it was synced last, and where a failed sync since may have applied part of it.
            destinations = {(spec.cluster, spec.namespace), (synced.get("cluster"), synced.get("namespace"))}
            for cluster, namespace in destinations:
                if cluster:
                    self._remove_from(cluster, namespace, record)
            self.state.remove("applications", name)

    def status(self, name: str) -> DeliveryStatus:
        """Sync, health, last operation and history; syncs first when the branch has moved (auto-sync)."""
        record = self._record(name)
        spec = self._spec(record)
        head, problem = self._head(spec)
        if head and self._wants_sync(record, head):
            record = self._sync(name, automatic=True)
            spec = self._spec(record)
            head, problem = self._head(spec)
        operation, synced = record["operation"] or {}, record["synced"]
        if synced:
            target = self._target(synced["cluster"])
            if target is None:
                state, said, images = "Unknown", f"no cluster is registered for {synced['cluster']}", ()
            else:
                workloads = [(kind, name_) for _, kind, name_ in synced["objects"] if kind in _WORKLOAD_KINDS]
                state, said, images = health(self.connector.connect(target), synced["namespace"], name, workloads)
        else:
            state, said, images = "Missing", "", ()
        in_sync = bool(synced and head and synced["revision"] == head and synced["digest"] == _digest(spec))
        return DeliveryStatus(
            sync="Unknown" if head is None else "Synced" if in_sync else "OutOfSync", health=state,
            operation=operation.get("phase", ""),
            message="; ".join(m for m in (operation.get("message"), said, problem) if m),
            revision=head or (synced or {}).get("revision", ""),
            history=[DeliveryEvent(revision=h["revision"], deployed_at=h["deployed_at"], id=h["id"],
                                   image=(h.get("images") or [""])[0]) for h in record["history"]],
            reconciled_at=_now(), operation_started_at=operation.get("started_at", ""),
            operation_finished_at=operation.get("finished_at", ""), images=images)

    def sync(self, name: str) -> None:
        """Sync the application to the head of its revision now, pruning; a failure is its operation's (see status)."""
        self._record(name)
        self._sync(name, automatic=False)

    def refresh(self, name: str) -> None:
        """Compare the application with its repository now, and sync it when the branch has moved (auto-sync)."""
        record = self._record(name)
        head, _ = self._head(self._spec(record))
        if head and self._wants_sync(record, head):
            self._sync(name, automatic=True)

    # --- syncing ---------------------------------------------------------------------------------

    def _sync(self, name: str, automatic: bool) -> dict[str, Any]:
        """Sync under the application's lock; an automatic sync that another caller did meanwhile is not redone."""
        with self.state.locked(name):
            record = self._record(name)
            spec = self._spec(record)
            head, problem = self._head(spec)
            if automatic and not (head and self._wants_sync(record, head)):
                return record
            started = _now()
            try:
                if head is None:
                    raise SyncFailed(problem)
                synced = self._apply(spec, head, record)
            except SyncFailed as failed:
                record["operation"] = {"phase": "Failed", "message": str(failed), "revision": head or "",
                                       "digest": _digest(spec), "started_at": started, "finished_at": _now()}
            else:
                pruned = synced.pop("pruned")
                record["operation"] = {
                    "phase": "Succeeded", "revision": head, "digest": _digest(spec), "started_at": started,
                    "finished_at": synced["at"],
                    "message": f"successfully synced {len(synced['objects'])} object(s)"
                               + (f", pruned {', '.join(pruned)}" if pruned else "")}
                record["synced"] = synced
                history = record["history"]
                history.append({"id": history[-1]["id"] + 1 if history else 0, "revision": head,
                                "deployed_at": synced["at"], "images": synced["images"]})
                record["history"] = history[-HISTORY_LIMIT:]
            self.state.write("applications", name, record)
            return record

    def _apply(self, spec: DeliverySpec, head: str, record: dict[str, Any]) -> dict[str, Any]:
        """Render, apply and prune; what is now synced. SyncFailed for the repository's or the manifests' faults.

        Every kind ever rendered is added to ``record["kinds"]`` before anything is applied, so that the
        prunes and the delete that follow look for it, even when this sync fails halfway.
        """
        problem = self._forbidden(spec)
        if problem:
            raise SyncFailed(problem)
        target = self._target(spec.cluster)
        if target is None:
            raise SyncFailed(f"no cluster is registered for {spec.cluster}")
        manifests = self.sources.render(spec, head)
        refused = sorted({m.get("kind") for m in manifests} & {"ResourceQuota", "LimitRange"})
        if refused:
            raise SyncFailed(f"the chart renders {', '.join(refused)}: the portal sets the namespace's quota "
                             f"and limits, an application may not")
        cluster = self.connector.connect(target)
        keep = {key(m) for m in manifests}
        record["kinds"] = [list(k) for k in sorted({*map(tuple, record.get("kinds") or []), *kinds_of(manifests)})]
        previous = record["synced"] or {}
        try:
            cluster.apply(spec.namespace, manifests)
            pruned = prune(cluster, spec.namespace, spec.name, keep, self._kinds(record))
            if previous and (previous["cluster"], previous["namespace"]) != (spec.cluster, spec.namespace):
                # It moved: nothing of it stays at its former destination.
                pruned += [f"{previous['namespace']}/{p}"
                           for p in self._remove_from(previous["cluster"], previous["namespace"], record)]
        except _MANIFEST_ERRORS as exc:
            raise SyncFailed(exc.message) from exc
        images = sorted({c.get("image", "") for m in manifests if m.get("kind") in _WORKLOAD_KINDS
                         for c in containers(m)} - {""})
        return {"revision": head, "digest": _digest(spec), "at": _now(), "cluster": spec.cluster,
                "namespace": spec.namespace, "objects": sorted([list(k) for k in keep]), "images": images,
                "pruned": pruned}

    def _remove_from(self, api_url: str, namespace: str, record: dict[str, Any]) -> list[str]:
        """Delete every object of the application in ``namespace`` of that cluster (none when it is not registered)."""
        target = self._target(api_url)
        if target is None:
            return []
        return prune(self.connector.connect(target), namespace, record["spec"]["name"], set(), self._kinds(record))

    @staticmethod
    def _kinds(record: dict[str, Any]) -> list[tuple[str, str]]:
        """The kinds to look for the application's objects in: the chart's, and any it ever rendered."""
        return [*CHART_KINDS, *map(tuple, record.get("kinds") or [])]

    def _wants_sync(self, record: dict[str, Any], head: str) -> bool:
        """Auto-sync: the head (or the spec) differs from what is synced, and was not tried already."""
        digest = _digest(self._spec(record))
        synced, operation = record["synced"] or {}, record["operation"] or {}
        if (synced.get("revision"), synced.get("digest")) == (head, digest):
            return False
        return (operation.get("revision"), operation.get("digest")) != (head, digest)

    def _head(self, spec: DeliverySpec) -> tuple[str | None, str]:
        """The commit the application's revision names now, or None and why."""
        try:
            return self.sources.head(spec), ""
        except (NotFound, InvalidRequest) as exc:
            return None, exc.message

    def _forbidden(self, spec: DeliverySpec) -> str:
        """Why the application's project does not allow it, or ""."""
        project = self.state.read("projects", spec.project)
        if project is None:
            return f"project {spec.project} does not exist"
        if not any(glob_match(p, spec.repository_url) for p in project["source_repos"]):
            return f"repository {spec.repository_url} is not permitted in project {spec.project}"
        destinations = [Destination(**d) for d in project["destinations"]]
        if not any(glob_match(d.server, spec.cluster) and glob_match(d.namespace, spec.namespace)
                   for d in destinations):
            return f"destination {spec.cluster} namespace {spec.namespace} is not permitted in project {spec.project}"
        return ""

    # --- records ---------------------------------------------------------------------------------

    def _claim(self, kind: str, name: str, owner: str) -> None:
        current = self.state.read(kind, name)
        if current is not None and current["owner"] != owner:
            raise Conflict(SYSTEM, f"{kind[:-1]} {name} exists and is not owned by {owner} "
                                   f"(owner: {current['owner']})", status=409)

    def _record(self, name: str) -> dict[str, Any]:
        record = self.state.read("applications", name)
        if record is None:
            raise NotFound(SYSTEM, f"application {name} not found", status=404)
        return record

    @staticmethod
    def _spec(record: dict[str, Any]) -> DeliverySpec:
        return DeliverySpec(**record["spec"])

    def _application(self, record: dict[str, Any]) -> ExternalResource:
        spec = self._spec(record)
        return ExternalResource(system=SYSTEM, kind="application", external_id=spec.name, name=spec.name,
                                owner=spec.owner, attributes={
                                    "project": spec.project, "repository_url": spec.repository_url,
                                    "path": spec.path, "revision": spec.revision, "value_files": spec.values_file,
                                    "cluster": spec.cluster, "destination_namespace": spec.namespace})


def _digest(spec: DeliverySpec) -> str:
    """What a sync depends on besides the commit: a changed spec is a new sync, as in Argo CD."""
    wanted = {k: v for k, v in asdict(spec).items() if k not in ("owner", "labels")}
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:16]
