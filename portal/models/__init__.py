"""Typed SQLAlchemy 2.0 models, one module per aggregate."""

from portal.models.account import Membership, MembershipStatus, Role, Team, User
from portal.models.audit import AuditEvent
from portal.models.build import Build, BuildLogChunk, BuildState, Deployment, DeploymentState, HookDelivery
from portal.models.cluster import Cluster
from portal.models.kiosk import KioskToken
from portal.models.project import Application, Project
from portal.models.secret import StoredSecret
from portal.models.token import PersonalAccessToken
from portal.models.provisioning import (
    ApplicationResource,
    Orphan,
    ProvisioningRun,
    ProvisioningStep,
    RunKind,
    RunState,
    StepState,
)

__all__ = [
    "Application",
    "ApplicationResource",
    "Orphan",
    "PersonalAccessToken",
    "ProvisioningRun",
    "ProvisioningStep",
    "RunKind",
    "RunState",
    "StepState",
    "StoredSecret",
    "AuditEvent",
    "Build",
    "BuildLogChunk",
    "BuildState",
    "Deployment",
    "DeploymentState",
    "HookDelivery",
    "Cluster",
    "KioskToken",
    "Membership",
    "MembershipStatus",
    "Project",
    "Role",
    "Team",
    "User",
]
