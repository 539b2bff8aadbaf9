"""In-memory fakes of the outside systems, honouring the contracts of ``integrations`` exactly.

Their state lives in a ``FakeWorld`` (Redis), so the test and the worker
processes it starts share one world. Each public method first counts its call
and applies the world's injection rules for ``<contract>.<method>`` (fail,
crash, pause, latency), then does its work, then applies the "after" rules.
The portal builds them from its settings with the import path
``tests.fakes.providers:FakeSourceControl.from_settings`` (and so on).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

from integrations.ci import Build, BuildState, ConsoleChunk, JobSpec
from integrations.cluster import ClusterCheck, ClusterTarget, NamespaceSpec, WorkloadSummary
from integrations.delivery import DeliveryEvent, DeliveryProjectSpec, DeliverySpec, DeliveryStatus
from integrations.errors import InvalidRequest
from integrations.registry import ImageTag, RegistryCredentials, RobotAccount
from integrations.resources import ExternalResource
from integrations.scm import Commit, RepositorySpec, WebhookSpec
from tests.fakes.base import FakeProvider, operation
from tests.fakes.logs import FakeLogStore
from tests.fakes.world import FakeWorld

COMMITTER = "Developer Portal"
# KEYS[1]: the repository's branch heads. ARGV: prefix, repository id, branch, message, author,
# branch to start from when ``branch`` is new, then path/content pairs. Each commit keeps its whole tree.
_COMMIT = """
local p = ARGV[1]
local head = redis.call('HGET', KEYS[1], ARGV[3])
if not head then head = redis.call('HGET', KEYS[1], ARGV[6]) end
local n = redis.call('INCR', p .. ':seq:commit')
local sha = redis.sha1hex(p .. ':' .. ARGV[2] .. ':' .. n)
local tree = p .. ':tree:' .. sha
if head then
  local old = redis.call('HGETALL', p .. ':tree:' .. head)
  for i = 1, #old, 2 do redis.call('HSET', tree, old[i], old[i + 1]) end
end
for i = 7, #ARGV, 2 do redis.call('HSET', tree, ARGV[i], ARGV[i + 1]) end
redis.call('HSET', p .. ':commit:' .. sha, 'message', ARGV[4], 'author', ARGV[5], 'repository', ARGV[2])
redis.call('HSET', KEYS[1], ARGV[3], sha)
redis.call('RPUSH', p .. ':history:' .. ARGV[2] .. ':' .. ARGV[3], sha)
return sha
"""


class FakeSourceControl(FakeProvider):
    """A Git host like GitLab: repositories with numeric ids, branches whose commits keep whole trees, webhooks.

    Deleting a repository deletes its webhooks, as GitLab does.
    """

    contract, system = "scm", "fake-scm"
    base_url = "https://scm.fake.invalid"

    def __init__(self, world: FakeWorld):
        super().__init__(world)
        self._commit_script = world.redis.register_script(_COMMIT)

    @operation
    def find_repository(self, path: str) -> ExternalResource | None:
        return self._find("repository", path)

    @operation
    def create_repository(self, spec: RepositorySpec) -> ExternalResource:
        url = f"{self.base_url}/{spec.path}"
        resource = self._create("repository", spec.path, {
            "name": spec.path, "owner": spec.owner, "url": url, "path": spec.path, "description": spec.description,
            "default_branch": spec.default_branch, "clone_url": f"{url}.git",
        })
        if spec.files:
            self._commit(resource.external_id, spec.default_branch, spec.default_branch, spec.files,
                         spec.commit_message)
        return resource

    @operation
    def delete_repository(self, external_id: str) -> None:
        self._delete("repository", external_id)
        for hook_id, hook in self.world.objects("webhook").items():
            if hook["repository_id"] == external_id:
                self.world.remove("webhook", hook_id)
        self.world.redis.delete(self.world.key("heads", external_id))

    @operation
    def commit_files(self, external_id: str, branch: str, files: dict[str, bytes], message: str) -> Commit:
        repository = self._existing("repository", external_id)
        if not files:
            raise InvalidRequest(self.system, "a commit needs at least one file", status=400)
        sha = self._commit(external_id, branch, repository["default_branch"], files, message)
        return Commit(sha=sha, message=message, author=COMMITTER, url=f"{repository['url']}/-/commit/{sha}")

    @operation
    def read_file(self, external_id: str, ref: str, path: str) -> bytes:
        self._existing("repository", external_id)
        sha = self._resolve(external_id, ref)
        content = self.world.redis.hget(self.world.key("tree", sha), path)
        if content is None:
            raise self._not_found("file", f"{path} at {ref}")
        return content

    @operation
    def head(self, external_id: str, branch: str) -> Commit:
        self._existing("repository", external_id)
        sha = self.world.redis.hget(self.world.key("heads", external_id), branch)
        if sha is None:
            raise self._not_found("branch", f"{branch} of repository {external_id}")
        fields = {k.decode(): v.decode() for k, v in self.world.redis.hgetall(self.world.key("commit", sha.decode())).items()}
        return Commit(sha=sha.decode(), message=fields["message"], author=fields["author"])

    @operation
    def find_webhook(self, repository_id: str, url: str) -> ExternalResource | None:
        return self._find("webhook", f"{repository_id}:{url}")

    @operation
    def create_webhook(self, spec: WebhookSpec) -> ExternalResource:
        repository = self._existing("repository", spec.repository_id)
        return self._create("webhook", f"{spec.repository_id}:{spec.url}", {
            "name": spec.url, "owner": spec.owner, "url": f"{repository['url']}/-/hooks",
            "repository_id": spec.repository_id, "events": ",".join(spec.events),
            "secret_sha256": hashlib.sha256(spec.secret.encode()).hexdigest(),
        })

    @operation
    def delete_webhook(self, repository_id: str, external_id: str) -> None:
        hook = self.world.get("webhook", external_id)
        if hook is None or hook["repository_id"] != repository_id:
            raise self._not_found("webhook", f"{external_id} of repository {repository_id!r}")
        self._delete("webhook", external_id)

    def history(self, external_id: str, branch: str) -> list[Commit]:
        """The commits of a branch, oldest first (for tests; not part of the contract)."""
        shas = [s.decode() for s in self.world.redis.lrange(self.world.key("history", external_id, branch), 0, -1)]
        commits = []
        for sha in shas:
            fields = {k.decode(): v.decode() for k, v in self.world.redis.hgetall(self.world.key("commit", sha)).items()}
            commits.append(Commit(sha=sha, message=fields["message"], author=fields["author"]))
        return commits

    def _commit(self, external_id: str, branch: str, start: str, files: dict[str, bytes], message: str) -> str:
        pairs = [x for path, content in sorted(files.items()) for x in (path, content)]
        sha = self._commit_script(keys=[self.world.key("heads", external_id)],
                                  args=[self.world.prefix, external_id, branch, message, COMMITTER, start, *pairs])
        return sha.decode()

    def _resolve(self, external_id: str, ref: str) -> str:
        head = self.world.redis.hget(self.world.key("heads", external_id), ref)
        if head is not None:
            return head.decode()
        owner = self.world.redis.hget(self.world.key("commit", ref), "repository")
        if owner is not None and owner.decode() == external_id:
            return ref
        raise self._not_found("ref", f"{ref} of repository {external_id}")


class FakeCIServer(FakeProvider):
    """A CI server like Jenkins: jobs named ``folder/name``, builds that go through the queue and succeed at once."""

    contract, system = "ci", "fake-ci"
    base_url = "https://ci.fake.invalid"

    @operation
    def find_job(self, path: str) -> ExternalResource | None:
        return self._find("job", path)

    @operation
    def create_job(self, spec: JobSpec) -> ExternalResource:
        return self._create("job", spec.path, {
            "name": spec.path, "owner": spec.owner, "url": f"{self.base_url}/job/{spec.folder}/job/{spec.name}/",
            "repository_url": spec.repository_url, "credentials_id": spec.credentials_id,
            "parameters": ",".join(spec.parameters),
        })

    @operation
    def delete_job(self, path: str) -> None:
        self._delete("job", path)
        for build_id, build in self.world.objects("build").items():
            if build["job"] == path:
                self.world.remove("build", build_id)

    @operation
    def trigger_build(self, path: str, parameters: dict[str, str]) -> Build:
        job = self._existing("job", path)
        number, queue_id = self.world.next_id(f"build:{path}"), str(self.world.next_id("queue"))
        name = f"{path}#{number}"
        self.world.store("build", name, {
            "name": name, "owner": None, "url": f"{job['url']}{number}/", "job": path, "number": number,
            "queue_id": queue_id, "parameters": dict(parameters), "duration_ms": 1200,
        })
        self.world.redis.hset(self.world.key("queue"), queue_id, name)
        return Build(job=path, number=None, state=BuildState.QUEUED, queue_id=queue_id, parameters=dict(parameters))

    @operation
    def get_build(self, build: Build) -> Build:
        if build.number is None:
            name = self.world.redis.hget(self.world.key("queue"), build.queue_id)
            if name is None:
                raise self._not_found("queue item", build.queue_id)
            build_id = name.decode()
        else:
            build_id = f"{build.job}#{build.number}"
        record = self._existing("build", build_id)
        result = self.world.redis.hget(self.world.key("ci-result"), record["job"])
        state = BuildState(result.decode()) if result else BuildState.SUCCEEDED
        return Build(job=record["job"], number=record["number"], state=state, url=record["url"],
                     duration_ms=record["duration_ms"], queue_id=record["queue_id"], parameters=record["parameters"])

    def finish_builds_as(self, path: str, state: BuildState) -> None:
        """For tests: the builds of the job end in ``state`` (a failed test, an image that does not build)."""
        self.world.redis.hset(self.world.key("ci-result"), path, state.value)

    @operation
    def console(self, path: str, number: int, start: int = 0) -> ConsoleChunk:
        """The finished build's console from character ``start``; ``more`` is False, the build being over."""
        if start < 0:
            raise InvalidRequest(self.system, f"start must not be negative, not {start}", status=400)
        record = self._existing("build", f"{path}#{number}")
        text = "".join([
            "Started by the developer portal\n",
            *(f"{k}={v}\n" for k, v in sorted(record["parameters"].items())),
            f"Building {path} #{number}\n", "Finished: SUCCESS\n",
        ])
        return ConsoleChunk(text=text[start:], next_start=max(start, len(text)), more=False)


class FakeImageRegistry(FakeProvider):
    """An image registry like Nexus: Docker repositories by name, per-team push credentials, tags."""

    contract, system = "registry", "fake-registry"
    server = "registry.fake.invalid"

    @operation
    def find_repository(self, name: str) -> ExternalResource | None:
        return self._find("image_repository", name)

    @operation
    def create_repository(self, name: str, owner: str) -> ExternalResource:
        return self._create("image_repository", name, {
            "name": name, "owner": owner, "url": f"https://{self.server}/{name}", "format": "docker",
        })

    @operation
    def delete_repository(self, name: str) -> None:
        self._delete("image_repository", name)
        self.world.redis.delete(self.world.key("tags", name))

    @operation
    def credentials(self, team: str) -> RegistryCredentials:
        return RegistryCredentials(server=self.server, username=f"{team}-push", secret_ref=f"registry-push-{team}")

    @operation
    def list_tags(self, repository: str) -> list[ImageTag]:
        self._existing("image_repository", repository)
        tags = self.world.redis.hgetall(self.world.key("tags", repository))
        return [ImageTag(repository=repository, tag=t.decode(), digest=d.decode()) for t, d in sorted(tags.items())]

    def image_name(self, repository: str) -> str:
        return f"{self.server}/{repository}"

    @operation
    def ensure_robot(self, team: str, owner: str) -> RobotAccount:
        seq = self.world.redis.incr(self.world.key("robot", team))
        return RobotAccount(server=self.server, username=f"{team}-robot", password=f"fake-secret-{team}-{seq}")


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


class FakeClusterAccess(FakeProvider):
    """A Kubernetes API: namespaces converged to a spec, manifests applied into them, workloads all ready.

    ``ensure_namespace`` refuses (Conflict) a namespace that carries another owner's marker, or none.
    """

    contract, system = "cluster", "fake-cluster"
    base_url = "https://cluster.fake.invalid"
    cluster = "default"

    def connect(self, target: ClusterTarget) -> "FakeClusterAccess":
        """The same fake, working on the named cluster (its namespaces say which)."""
        bound = FakeClusterAccess(self.world)
        bound.cluster = target.name
        return bound

    @operation
    def check(self) -> ClusterCheck:
        from integrations.kubernetes import PERMISSIONS  # the same permissions as the real adapter checks

        return ClusterCheck(version="v1.37.2-fake", permissions={what: True for what in PERMISSIONS})

    @operation
    def find_namespace(self, name: str) -> ExternalResource | None:
        return self._find("namespace", name)

    @operation
    def ensure_namespace(self, spec: NamespaceSpec) -> ExternalResource:
        return self._create("namespace", spec.name, {
            "name": spec.name, "owner": spec.owner, "url": f"{self.base_url}/api/v1/namespaces/{spec.name}",
            "labels": dict(spec.labels), "team_group": spec.team_group, "cluster": self.cluster,
            "pull_secret": spec.pull_secret.name if spec.pull_secret else "",
            "quota": {"cpu": spec.quota.cpu, "memory": spec.quota.memory, "pods": spec.quota.pods,
                      "limits_cpu": spec.quota.limits_cpu, "limits_memory": spec.quota.limits_memory},
        }, mode="upsert")

    @operation
    def delete_namespace(self, name: str) -> None:
        self._delete("namespace", name)
        for manifest_id, manifest in self.world.objects("manifest").items():
            if manifest["namespace"] == name:
                self.world.remove("manifest", manifest_id)

    @operation
    def apply(self, namespace: str, manifests: list[dict[str, Any]]) -> list[ExternalResource]:
        """Create or replace each manifest (server-side apply); all are checked before any is stored."""
        self._existing("namespace", namespace)
        for m in manifests:
            meta = m.get("metadata") or {}
            if not m.get("kind") or not meta.get("name"):
                raise InvalidRequest(self.system, "a manifest needs kind and metadata.name", status=422)
            if meta.get("namespace", namespace) != namespace:
                raise InvalidRequest(self.system, f"{m['kind']}/{meta['name']} names namespace "
                                                  f"{meta['namespace']}, not {namespace}", status=400)
        applied = []
        for m in manifests:
            key = f"{namespace}/{m['kind']}/{m['metadata']['name']}"
            resource = self._create("manifest", key, {
                "name": m["metadata"]["name"], "owner": None, "url": "", "namespace": namespace, "kind": m["kind"],
                "manifest": m,
            }, mode="upsert")
            applied.append(ExternalResource(system=self.system, kind=m["kind"], external_id=key,
                                            name=resource.name, url=f"{self.base_url}/{key}"))
        return applied

    @operation
    def list_workloads(self, namespace: str) -> list[WorkloadSummary]:
        self._existing("namespace", namespace)
        workloads = []
        for record in self.world.objects("manifest").values():
            if record["namespace"] != namespace or record["kind"] not in WORKLOAD_KINDS:
                continue
            spec = record["manifest"].get("spec") or {}
            desired = 1 if record["kind"] == "DaemonSet" else int(spec.get("replicas", 1))
            containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
            workloads.append(WorkloadSummary(kind=record["kind"], name=record["name"], namespace=namespace,
                                             ready=desired, desired=desired,
                                             details={"images": [c.get("image", "") for c in containers]}))
        return sorted(workloads, key=lambda w: (w.kind, w.name))


class FakeDelivery(FakeProvider):
    """A GitOps deployer like Argo CD: applications converged to a spec, always Synced and Healthy.

    Creating an application and each ``sync`` add a deployment to its history.
    """

    contract, system = "delivery", "fake-delivery"
    base_url = "https://delivery.fake.invalid"

    @operation
    def find_project(self, name: str) -> ExternalResource | None:
        return self._find("delivery_project", name)

    @operation
    def ensure_project(self, spec: DeliveryProjectSpec) -> ExternalResource:
        return self._create("delivery_project", spec.name, {
            "name": spec.name, "owner": spec.owner, "url": f"{self.base_url}/settings/projects/{spec.name}",
            "source_repos": list(spec.source_repos),
            "destinations": [f"{d.server} {d.namespace}" for d in spec.destinations],
        }, mode="upsert")

    @operation
    def delete_project(self, name: str) -> None:
        self._delete("delivery_project", name)

    @operation
    def find_cluster(self, name: str) -> ExternalResource | None:
        return self._find("delivery_cluster", name)

    @operation
    def register_cluster(self, target: ClusterTarget, owner: str) -> ExternalResource:
        return self._create("delivery_cluster", target.name, {
            "name": target.name, "owner": owner, "url": f"{self.base_url}/settings/clusters/{target.name}",
            "server": target.api_url,
        }, mode="upsert")

    @operation
    def delete_cluster(self, name: str) -> None:
        self._delete("delivery_cluster", name)

    @operation
    def find_application(self, name: str) -> ExternalResource | None:
        return self._find("delivery_application", name)

    @operation
    def ensure_application(self, spec: DeliverySpec) -> ExternalResource:
        resource, created = self._store("delivery_application", spec.name, {
            "name": spec.name, "owner": spec.owner, "url": f"{self.base_url}/applications/{spec.name}",
            "project": spec.project, "repository_url": spec.repository_url, "path": spec.path,
            "values_file": spec.values_file, "cluster": spec.cluster, "namespace": spec.namespace,
            "revision": spec.revision,
        }, "upsert")
        if created:
            self._deployed(spec.name, spec.revision)
        return resource

    @operation
    def delete_application(self, name: str) -> None:
        self._delete("delivery_application", name)
        self.world.redis.delete(self.world.key("deployments", name))

    @operation
    def status(self, name: str) -> DeliveryStatus:
        record = self._existing("delivery_application", name)
        raw = self.world.redis.lrange(self.world.key("deployments", name), 0, -1)
        history = [DeliveryEvent(revision=r, deployed_at=at) for r, at in (x.decode().split(" ", 1) for x in raw)]
        played = self.world.redis.hgetall(self.world.key("deployer", name))
        if played:  # a test played the deployer: it synced this commit, with this health
            return DeliveryStatus(sync=played[b"sync"].decode(), health=played[b"health"].decode(),
                                  operation=played[b"operation"].decode(), revision=played[b"revision"].decode(),
                                  history=history)
        return DeliveryStatus(sync="Synced", health="Healthy", operation="Succeeded" if history else "",
                              revision=self._head(record), history=history)

    def _head(self, record: dict[str, Any]) -> str:
        """Auto-sync: the application is at the head of its branch in the fake Git host, when it is one of its."""
        for repository_id, repository in self.world.objects("repository").items():
            if record["repository_url"] in (repository["url"], repository.get("clone_url")):
                head = self.world.redis.hget(self.world.key("heads", repository_id), record["revision"])
                return head.decode() if head else record["revision"]
        return record["revision"]

    def play(self, name: str, revision: str, sync: str = "Synced", health: str = "Healthy",
             operation: str = "Succeeded") -> None:
        """Play Argo CD's controller: the application is at ``revision`` with this sync, health and operation."""
        self.world.redis.hset(self.world.key("deployer", name), mapping={
            "revision": revision, "sync": sync, "health": health, "operation": operation})

    @operation
    def sync(self, name: str) -> None:
        record = self._existing("delivery_application", name)
        self._deployed(name, record["revision"])

    @operation
    def refresh(self, name: str) -> None:
        self._existing("delivery_application", name)

    def _deployed(self, name: str, revision: str) -> None:
        at = datetime.now(timezone.utc).isoformat()
        self.world.redis.rpush(self.world.key("deployments", name), f"{revision} {at}")


__all__ = ["FakeCIServer", "FakeClusterAccess", "FakeDelivery", "FakeImageRegistry", "FakeLogStore",
           "FakeSourceControl"]
