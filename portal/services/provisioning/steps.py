"""The chain of provisioning steps. Each knows how to look for what it would create (by a
deterministic name), how to create it, and how to remove it.

Steps only talk to providers through the contracts in ``integrations/``; the
engine decides about retries, adoption and bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from integrations.cluster import Limits, Quota
from integrations.resources import ExternalResource
from integrations.scm import Member, RepositorySpec, WebhookSpec
from integrations.ci import JobSpec
from portal.services.naming import ResourceNames
from scaffolds import ScaffoldContext, render_deployment, render_source

@dataclass
class StepContext:
    """What a step knows about the application it provisions."""

    owner: str  # the application's uid: the ownership marker on everything we create
    names: ResourceNames
    description: str
    template: str
    public_url: str
    providers: Any
    known: dict[str, ExternalResource] = field(default_factory=dict)  # what earlier steps created
    log: Callable[[str], None] = print
    members: tuple[Member, ...] = ()  # the team's active members, for repository access
    webhook_secret: str = ""  # the push webhook's token, derived (hooks.webhook_secret), never stored
    # The team's secrets store (encrypted at rest): whether a reference exists, and keeping a new value.
    has_secret: Callable[[str], bool] = lambda name: False
    keep_secret: Callable[[str, str, str], None] = lambda name, value, username: None
    read_secret: Callable[[str], str | None] = lambda name: None
    # The team's cluster: its registered name ("" when none is bound), and a way to connect to a cluster
    # by name (the one a resource was made in may differ from today's binding).
    cluster_name: str = ""
    connect_cluster: Callable[[str], Any] = lambda name: None
    cluster_target: Callable[[str], Any] = lambda name: None
    quota: Quota = field(default_factory=Quota)
    limits: Limits = field(default_factory=Limits)
    other_team_applications: int = 0  # how many other applications the team has (shared things stay for them)

    def provider(self, kind: str) -> Any:
        return self.providers.get(kind)


class Step:
    """One link of the chain. ``converge`` steps are re-applied even when found, to repair drift."""

    name: ClassVar[str]
    label: ClassVar[str]
    kind: ClassVar[str]  # which provider serves it
    converge: ClassVar[bool] = False
    needs: ClassVar[str | None] = None  # an earlier step whose resource this one hangs on

    def find(self, ctx: StepContext) -> ExternalResource | None:
        raise NotImplementedError

    def create(self, ctx: StepContext) -> ExternalResource:
        raise NotImplementedError

    def delete(self, ctx: StepContext, resource: ExternalResource) -> None:
        raise NotImplementedError

    def complete(self, ctx: StepContext, resource: ExternalResource) -> None:
        """Finish what hangs on the resource, whether just created or found and adopted (idempotent)."""

    def unavailable(self, ctx: StepContext) -> str | None:
        """Why the step cannot run for this application (it is then skipped, saying so), or None."""
        return None

    def owner(self, ctx: StepContext) -> str:
        """The ownership marker of what this step makes: the application's, unless shared by the team."""
        return ctx.owner


UNCONFIGURED_REGISTRY = "registry.invalid"  # a reserved name: no registry is configured, images go nowhere


def _scaffold(ctx: StepContext) -> ScaffoldContext:
    """What the templates are rendered with: the application's names and where its images go."""
    registry = ctx.provider("registry")
    n = ctx.names
    image = registry.image_name(n.image_repository) if registry is not None else \
        f"{UNCONFIGURED_REGISTRY}/{n.image_repository}"
    host, _, path = image.partition("/")
    return ScaffoldContext(team=n.team, project=n.project, application=n.application, description=ctx.description,
                           registry=host, image=path)


class SourceRepository(Step):
    name, label, kind = "source_repository", "Source repository", "scm"

    def find(self, ctx):
        return ctx.provider("scm").find_repository(f"{ctx.names.team}/{ctx.names.source_repository}")

    def create(self, ctx):
        return ctx.provider("scm").create_repository(RepositorySpec(
            group=ctx.names.team, name=ctx.names.source_repository, owner=ctx.owner,
            description=ctx.description or f"Source of {ctx.names.application}",
            files=render_source(ctx.template, _scaffold(ctx)), members=ctx.members,
            commit_message=f"Start {ctx.names.application} from the {ctx.template} template",
        ))

    def delete(self, ctx, resource):
        ctx.provider("scm").delete_repository(resource.external_id)


class DeploymentRepository(SourceRepository):
    name, label = "deployment_repository", "Deployment repository"

    def find(self, ctx):
        return ctx.provider("scm").find_repository(f"{ctx.names.team}/{ctx.names.deployment_repository}")

    def create(self, ctx):
        return ctx.provider("scm").create_repository(RepositorySpec(
            group=ctx.names.team, name=ctx.names.deployment_repository, owner=ctx.owner,
            description=f"Deployment (GitOps) repository of {ctx.names.application}",
            files=render_deployment(_scaffold(ctx), ctx.template), members=ctx.members,
            commit_message=f"Helm chart and values per environment of {ctx.names.application}",
        ))


class SourceWebhook(Step):
    name, label, kind = "source_webhook", "Push webhook", "scm"
    needs = "source_repository"

    def _url(self, ctx):
        return f"{ctx.public_url.rstrip('/')}/hooks/gitlab"

    def find(self, ctx):
        return ctx.provider("scm").find_webhook(ctx.known[self.needs].external_id, self._url(ctx))

    def create(self, ctx):
        return ctx.provider("scm").create_webhook(WebhookSpec(
            repository_id=ctx.known[self.needs].external_id, url=self._url(ctx),
            secret=ctx.webhook_secret, owner=ctx.owner,
        ))

    def delete(self, ctx, resource):
        ctx.provider("scm").delete_webhook(resource.attributes.get("repository_id", ""), resource.external_id)


class CIJob(Step):
    name, label, kind = "ci_job", "CI job", "ci"

    def find(self, ctx):
        return ctx.provider("ci").find_job(f"{ctx.names.team}/{ctx.names.ci_job}")

    def create(self, ctx):
        source = ctx.known.get("source_repository")
        return ctx.provider("ci").create_job(JobSpec(
            folder=ctx.names.team, name=ctx.names.ci_job, owner=ctx.owner,
            repository_url=(source.attributes.get("http_url") or source.url) if source else "",
        ))

    def delete(self, ctx, resource):
        ctx.provider("ci").delete_job(resource.external_id)


class ImageRepository(Step):
    name, label, kind = "image_repository", "Image repository", "registry"

    def find(self, ctx):
        return ctx.provider("registry").find_repository(ctx.names.image_repository)

    def create(self, ctx):
        return ctx.provider("registry").create_repository(ctx.names.image_repository, ctx.owner)

    def complete(self, ctx, resource):
        # The team's robot account (CI pushes, cluster pulls) is made once per team; its password is kept
        # encrypted under the reference the registry names, and never shown.
        registry = ctx.provider("registry")
        reference = registry.credentials(ctx.names.team).secret_ref
        if reference and not ctx.has_secret(reference):  # a registry without accounts names no secret
            robot = registry.ensure_robot(ctx.names.team, ctx.owner)
            ctx.keep_secret(reference, robot.password, robot.username)
            ctx.log(f"robot account {robot.username} ready for team {ctx.names.team}; its password is kept as "
                    f"{reference}")

    def delete(self, ctx, resource):
        ctx.provider("registry").delete_repository(resource.external_id)
