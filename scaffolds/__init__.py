"""The templates of the repositories the portal creates for an application, and their renderer.

Layout of this folder:

    common/        files every source repository gets (the Jenkinsfile, .gitignore)
    <stack>/       one application template per stack; a folder is a stack when it holds portal.yaml
    deployment/    the deployment (GitOps) repository: a Helm chart and a values file per environment

How a template file becomes a repository file:

- a name ending in ``.j2`` is rendered by Jinja2 (StrictUndefined) and loses the suffix;
- every other file is copied byte for byte, which is how Helm's own templates under
  ``chart/templates/`` keep their ``{{ ... }}``;
- a name holding ``__environment__`` is written once per environment of the context, with
  ``environment`` and that environment's ``size`` in the template's variables.

A stack's file wins over a ``common/`` file of the same name. Nothing here imports the
portal: callers hand in the names they already derived.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

ROOT = Path(__file__).resolve().parent
COMMON = "common"
DEPLOYMENT = "deployment"
MANIFEST = "portal.yaml"
ENVIRONMENT_PLACEHOLDER = "__environment__"

# Replicas and resources per environment; an environment added later starts as small as dev.
SIZES: dict[str, dict[str, Any]] = {
    "dev": {"replicas": 1, "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "250m", "memory": "128Mi"}},
    "staging": {"replicas": 2, "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "500m", "memory": "256Mi"}},
    "prod": {"replicas": 3, "requests": {"cpu": "250m", "memory": "256Mi"},
             "limits": {"cpu": "1", "memory": "512Mi"}},
}

_JUNK_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".git", ".idea", ".vscode"}
_JUNK_SUFFIXES = (".pyc", ".pyo", ".swp", ".swo", ".orig", ".rej", "~")
_JUNK_NAMES = {".DS_Store", "Thumbs.db"}
_MANIFEST_KEYS = ("base_image", "test", "port", "health", "ready")


@dataclass(frozen=True)
class ScaffoldContext:
    """What the templates know about one application.

    ``registry`` is the registry's host (``host[:port]``, no scheme) and ``image`` the
    repository path inside it (``team/project-application``); the pipeline pushes
    ``registry/image:tag`` and the chart pulls it. ``push_secret`` names the Kubernetes
    Secret (type kubernetes.io/dockerconfigjson) the build agent mounts for kaniko,
    ``pull_secret`` the one the application's pods pull with.
    """

    team: str
    project: str
    application: str
    registry: str
    image: str
    description: str = ""
    environments: tuple[str, ...] = ("dev", "staging", "prod")
    push_secret: str = "registry-push"
    pull_secret: str = "registry-pull"

    def __post_init__(self) -> None:
        if "://" in self.registry or "/" in self.registry:
            raise ValueError(f"registry must be a host[:port] without scheme or path, not {self.registry!r}")
        if not self.registry:
            raise ValueError("registry is required: the host images are pushed to and pulled from")
        if not self.environments:
            raise ValueError("at least one environment is required")

    def variables(self) -> dict[str, Any]:
        return {
            "team": self.team, "project": self.project, "application": self.application,
            "description": self.description, "registry": self.registry, "image": self.image,
            "image_reference": f"{self.registry}/{self.image}", "environments": list(self.environments),
            "push_secret": self.push_secret, "pull_secret": self.pull_secret,
        }


def available_stacks() -> list[str]:
    """The stacks a new application can start from: the folders holding a portal.yaml, sorted."""
    return sorted(p.parent.name for p in ROOT.glob(f"*/{MANIFEST}"))


def stack_manifest(stack: str) -> dict[str, Any]:
    """The stack's portal.yaml: base_image, test (and optional setup) commands, port, health and ready paths."""
    path = _stack_folder(stack) / MANIFEST
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    missing = [k for k in _MANIFEST_KEYS if k not in (manifest or {})]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}")
    return manifest


def render_source(stack: str, ctx: ScaffoldContext) -> dict[str, bytes]:
    """Every file of a new source repository for ``stack``, by path, in path order."""
    folder = _stack_folder(stack)
    variables = {**ctx.variables(), "stack": stack, "manifest": stack_manifest(stack)}
    files = _render_tree(ROOT / COMMON, variables, ctx.environments)
    files.update(_render_tree(folder, variables, ctx.environments))
    return dict(sorted(files.items()))


def render_deployment(ctx: ScaffoldContext, stack: str) -> dict[str, bytes]:
    """Every file of a new deployment repository: the chart, its README and values-<environment>.yaml.

    The stack decides the container port and the probe paths.
    """
    variables = {**ctx.variables(), "stack": stack, "manifest": stack_manifest(stack)}
    return dict(sorted(_render_tree(ROOT / DEPLOYMENT, variables, ctx.environments).items()))


def _stack_folder(stack: str) -> Path:
    stacks = available_stacks()
    if stack not in stacks:
        raise ValueError(f"unknown stack {stack!r}; the stacks are: {', '.join(stacks)}")
    return ROOT / stack


@functools.cache
def _environment() -> Environment:
    """One Jinja2 environment per process, so that each template is compiled once, not per application."""
    env = Environment(
        loader=FileSystemLoader(str(ROOT)), undefined=StrictUndefined, keep_trailing_newline=True,
        autoescape=select_autoescape(enabled_extensions=("html.j2", "htm.j2"), default=False),
    )
    # A JSON string is a valid YAML and Python string literal: any description can go into either.
    env.filters["quote"] = lambda value: json.dumps(str(value), ensure_ascii=False)
    return env


def _template_files(folder: Path) -> list[PurePosixPath]:
    found = []
    for path in folder.rglob("*"):
        relative = PurePosixPath(path.relative_to(folder).as_posix())
        if not path.is_file() or _JUNK_DIRS.intersection(relative.parts[:-1]):
            continue
        if relative.name in _JUNK_NAMES or relative.name.endswith(_JUNK_SUFFIXES):
            continue
        found.append(relative)
    return sorted(found)


def _render_tree(folder: Path, variables: dict[str, Any], environments: tuple[str, ...]) -> dict[str, bytes]:
    env = _environment()
    files: dict[str, bytes] = {}
    for relative in _template_files(folder):
        templated = relative.suffix == ".j2"
        target = str(relative.with_suffix("")) if templated else str(relative)
        if ENVIRONMENT_PLACEHOLDER in target:
            outputs = [(target.replace(ENVIRONMENT_PLACEHOLDER, e),
                        {"environment": e, "size": SIZES.get(e, SIZES["dev"])}) for e in environments]
        else:
            outputs = [(target, {})]
        for name, extra in outputs:
            if templated:
                template = env.get_template(f"{folder.name}/{relative}")
                files[name] = template.render({**variables, **extra}).encode("utf-8")
            else:
                files[name] = (folder / relative).read_bytes()
    return files
