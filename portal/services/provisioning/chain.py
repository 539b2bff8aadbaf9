"""The chain of steps of an application, with one namespace and one delivery application per environment."""

from __future__ import annotations

from functools import cache

from portal.services.provisioning.delivery_steps import DeliveryApplication, DeliveryProject, Namespace
from portal.services.provisioning.steps import (
    CIJob, DeploymentRepository, ImageRepository, SourceRepository, SourceWebhook, Step,
)

BASE: tuple[Step, ...] = (SourceRepository(), DeploymentRepository(), SourceWebhook(), CIJob(), ImageRepository(),
                          DeliveryProject())
PER_ENVIRONMENT = (Namespace, DeliveryApplication)


@cache
def chain(environments: tuple[str, ...]) -> tuple[Step, ...]:
    """The steps in order: the shared ones, then each environment's namespace and delivery application."""
    return BASE + tuple(kind(env) for env in environments for kind in PER_ENVIRONMENT)


@cache
def step_for(name: str) -> Step:
    """The step of a recorded step name (``ci_job``, ``namespace:prod``)."""
    base, _, environment = name.partition(":")
    for step in BASE:
        if step.name == name:
            return step
    for kind in PER_ENVIRONMENT:
        if kind.base == base and environment:
            return kind(environment)
    raise KeyError(f"unknown provisioning step {name!r}")


def step_label(name: str) -> str:
    try:
        return step_for(name).label
    except KeyError:
        return name


def environments_of(settings) -> tuple[str, ...]:
    return tuple(e.strip() for e in settings.environments.split(",") if e.strip())
