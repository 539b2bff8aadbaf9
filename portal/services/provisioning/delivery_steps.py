"""The delivery side of the chain: the team's delivery project, and per environment a namespace in the
team's cluster and the GitOps application that deploys into it."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import yaml
from kubernetes.utils import parse_quantity

from integrations.cluster import NamespaceSpec, PullSecret
from integrations.delivery import DeliveryProjectSpec, DeliverySpec, Destination
from integrations.errors import InvalidRequest, NotFound
from integrations.resources import ExternalResource
from portal.services.provisioning.steps import Step, StepContext

PULL_SECRET = "registry-pull"  # the name the deployment chart's imagePullSecrets uses


def labels(ctx: StepContext, environment: str) -> dict[str, str]:
    n = ctx.names
    return {"portal.dev/team": n.team, "portal.dev/project": n.project, "portal.dev/application": n.application,
            "portal.dev/environment": environment}


def _no_cluster(ctx: StepContext) -> str | None:
    if not ctx.cluster_name:
        return f"no cluster is bound to team {ctx.names.team} (an admin binds one under Admin → Clusters)"
    return None


def _repository_url(resource: ExternalResource | None) -> str:
    if resource is None:
        return ""
    return resource.attributes.get("http_url") or resource.url


def _with_cluster(resource: ExternalResource, cluster: str) -> ExternalResource:
    """Remember which cluster a thing was made in: removal goes there, whatever the team's binding is then."""
    return dataclasses.replace(resource, attributes={**resource.attributes, "cluster": cluster})


class DeliveryProject(Step):
    """The team's project in the deployer: where its applications may deploy from and to. Shared by the team."""

    name, label, kind = "delivery_project", "Delivery project of the team", "delivery"
    converge = True
    needs = "deployment_repository"

    def owner(self, ctx):
        return f"team-{ctx.names.team}"

    def unavailable(self, ctx):
        return _no_cluster(ctx)

    def find(self, ctx):
        return ctx.provider("delivery").find_project(ctx.names.team)

    def create(self, ctx):
        delivery = ctx.provider("delivery")
        target = ctx.cluster_target(ctx.cluster_name)
        delivery.register_cluster(target, owner="developer-portal")
        deploy_url = _repository_url(ctx.known[self.needs])
        # Every deployment repository of the team, by a glob over this one's URL (they are siblings).
        head, _, _ = deploy_url.rpartition("/")
        return delivery.ensure_project(DeliveryProjectSpec(
            name=ctx.names.team, owner=self.owner(ctx), description=f"Applications of team {ctx.names.team}",
            source_repos=(f"{head}/*-deploy.git" if deploy_url.endswith(".git") else f"{head}/*-deploy",),
            destinations=(Destination(server=target.api_url, namespace=f"{ctx.names.team}-*"),),
        ))

    def delete(self, ctx, resource):
        if ctx.other_team_applications:
            ctx.log(f"kept: {ctx.other_team_applications} other application(s) of the team use it")
            return
        ctx.provider("delivery").delete_project(resource.external_id)


class EnvironmentStep(Step):
    """A step made once per environment: its name says which (``namespace:dev``)."""

    base: str
    base_label: str

    def __init__(self, environment: str):
        self.environment = environment
        self.name = f"{self.base}:{environment}"  # type: ignore[misc]
        self.label = f"{self.base_label} ({environment})"  # type: ignore[misc]


class Namespace(EnvironmentStep):
    base, base_label, kind = "namespace", "Namespace, quota and access", "cluster"
    converge = True

    def unavailable(self, ctx):
        return _no_cluster(ctx)

    def find(self, ctx):
        found = ctx.connect_cluster(ctx.cluster_name).find_namespace(ctx.names.namespace(self.environment))
        return _with_cluster(found, ctx.cluster_name) if found else None

    def create(self, ctx):
        check_quota(ctx, self.environment)
        return _with_cluster(ctx.connect_cluster(ctx.cluster_name).ensure_namespace(NamespaceSpec(
            name=ctx.names.namespace(self.environment), owner=ctx.owner, team_group=f"team:{ctx.names.team}",
            labels=labels(ctx, self.environment), quota=ctx.quota, limits=ctx.limits,
            pull_secret=pull_secret(ctx),
        )), ctx.cluster_name)

    def delete(self, ctx, resource):
        ctx.connect_cluster(resource.attributes.get("cluster") or ctx.cluster_name).delete_namespace(
            resource.external_id)


class DeliveryApplication(EnvironmentStep):
    base, base_label, kind = "delivery_application", "Continuous delivery", "delivery"
    converge = True

    def unavailable(self, ctx):
        return _no_cluster(ctx)

    def find(self, ctx):
        return ctx.provider("delivery").find_application(ctx.names.delivery_application(self.environment))

    def create(self, ctx):
        n = ctx.names
        target = ctx.cluster_target(ctx.cluster_name)
        return ctx.provider("delivery").ensure_application(DeliverySpec(
            name=n.delivery_application(self.environment), owner=ctx.owner, project=n.team,
            repository_url=_repository_url(ctx.known.get("deployment_repository")), path="chart",
            values_file=f"values-{self.environment}.yaml", cluster=target.api_url,
            namespace=n.namespace(self.environment), labels=labels(ctx, self.environment),
        ))

    def delete(self, ctx, resource):
        ctx.provider("delivery").delete_application(resource.external_id)


def pull_secret(ctx: StepContext) -> PullSecret | None:
    """The team robot's credentials as the namespace's image pull secret, when a registry keeps them."""
    registry = ctx.provider("registry")
    if registry is None:
        return None
    credentials = registry.credentials(ctx.names.team)
    if not credentials.secret_ref:  # a registry without accounts (the embedded one): nothing to pull with
        return None
    password = ctx.read_secret(credentials.secret_ref)
    if password is None:
        ctx.log(f"no pull secret: the registry robot's password ({credentials.secret_ref}) is not stored yet")
        return None
    return PullSecret(name=PULL_SECRET, server=credentials.server, username=credentials.username, password=password)


def check_quota(ctx: StepContext, environment: str) -> None:
    """Refuse, before anything is applied, an environment whose chart asks for more than the team's quota."""
    scm, deploy = ctx.provider("scm"), ctx.known.get("deployment_repository")
    if scm is None or deploy is None:
        return
    branch = deploy.attributes.get("default_branch") or "main"
    try:
        values = yaml.safe_load(scm.read_file(deploy.external_id, branch, f"values-{environment}.yaml")) or {}
    except NotFound:
        return
    except yaml.YAMLError as exc:
        raise InvalidRequest("portal", f"values-{environment}.yaml is not valid YAML: {exc}") from None
    problems = chart_over_quota(values, ctx.quota)
    if problems:
        raise InvalidRequest("portal", f"values-{environment}.yaml asks for more than team {ctx.names.team}'s quota: "
                                       + "; ".join(problems) + ". Lower it, or ask an admin to raise the quota.")


def chart_over_quota(values: dict, quota) -> list[str]:
    """What the chart's replicas × per-pod requests and limits exceed in the quota, in words."""
    replicas = int(values.get("replicaCount") or 1)
    resources = values.get("resources") or {}
    problems = []
    for section, checks in (("requests", (("cpu", quota.cpu), ("memory", quota.memory))),
                            ("limits", (("cpu", quota.limits_cpu), ("memory", quota.limits_memory)))):
        for resource, allowed in checks:
            asked = (resources.get(section) or {}).get(resource)
            if asked is None:
                continue
            total = Decimal(replicas) * parse_quantity(str(asked))
            if total > parse_quantity(str(allowed)):
                problems.append(f"{replicas} × {asked} {resource} {section} is more than {allowed}")
    if replicas > quota.pods:
        problems.append(f"{replicas} pods is more than {quota.pods}")
    return problems
