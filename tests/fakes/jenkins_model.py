"""The fake Jenkins' model: items (the root, folders, jobs) with their builds, the queue, and the remote API's
``tree`` parameter, apart from the HTTP layer in ``tests.fakes.jenkins_server``."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import quote

FOLDER = "com.cloudbees.hudson.plugins.folder.Folder"
CLASSES = {"flow-definition": "org.jenkinsci.plugins.workflow.job.WorkflowJob", FOLDER: FOLDER,
           "project": "hudson.model.FreeStyleProject"}
RUN_CLASS = "org.jenkinsci.plugins.workflow.job.WorkflowRun"
UNSAFE = set("?*/\\%!@#$^&|<>[]:;")  # Jenkins.checkGoodName


@dataclass
class Item:
    """The root (no name), a folder or a job, as its config.xml says."""

    name: str
    parent: tuple[str, ...]
    config: str
    tag: str
    description: str
    parameters: list[tuple[str, str, bool]]  # name, default, trim
    children: dict[str, "Item"] = field(default_factory=dict)  # by lower-case name, as folders compare names
    builds: dict[int, "Run"] = field(default_factory=dict)
    next_number: int = 1

    @property
    def path(self) -> tuple[str, ...]:
        return (*self.parent, self.name) if self.name else ()  # the root has none

    def find(self, path: tuple[str, ...]) -> "Item | None":
        """The item at ``path`` below this one (names compared as folders do, ignoring case), or None."""
        item: Item | None = self
        for name in path:
            item = item.children.get(name.lower()) if item is not None else None
        return item


@dataclass
class Run:
    """A build of a job, with its console log."""

    number: int
    queue_id: int
    parameters: list[tuple[str, str]]
    started: float
    log: bytearray = field(default_factory=bytearray)
    building: bool = True
    result: str | None = None
    duration_ms: int = 0


@dataclass
class QueueItem:
    """A trigger waiting for an executor, or one that left the queue (cancelled, or a build with its number)."""

    id: int
    job: Item
    parameters: list[tuple[str, str]]
    since: float
    left: bool = False
    cancelled: bool = False
    number: int | None = None


def item_from_config(name: str, parent: tuple[str, ...], config: str) -> Item:
    root = ET.fromstring(config)
    parameters = [(p.findtext("name") or "", p.findtext("defaultValue") or "", p.findtext("trim") == "true")
                  for p in root.iter("hudson.model.StringParameterDefinition")]
    return Item(name=name, parent=parent, config=config, tag=root.tag, description=root.findtext("description") or "",
                parameters=parameters)


def check_good_name(name: str) -> str | None:
    if not name:
        return "No name is specified"
    for ch in name:
        if ch in UNSAFE or ord(ch) < 32:
            return f"'{ch}' is an unsafe character"
    if name in (".", ".."):
        return f"'{name}' is not an allowed name"
    return None


def parameters_action(parameters: list[tuple[str, str]]) -> dict[str, Any]:
    return {"_class": "hudson.model.ParametersAction", "parameters": [
        {"_class": "hudson.model.StringParameterValue", "name": n, "value": v} for n, v in parameters]}


def item_url(path: tuple[str, ...]) -> str:
    return "".join(f"job/{quote(name, safe='')}/" for name in path)


def walk(item: Item) -> Iterator[Item]:
    yield item
    for child in item.children.values():
        yield from walk(child)


def parse_tree(spec: str) -> dict[str, Any]:
    """Jenkins' ``tree`` parameter: ``a,b[c,d[e]]`` → {a: None, b: {c: None, d: {e: None}}}; ranges ignored."""
    spec = re.sub(r"\{[^}]*\}", "", spec)
    position = 0

    def fields() -> dict[str, Any]:
        nonlocal position
        found: dict[str, Any] = {}
        while position < len(spec):
            name = re.match(r"[^,\[\]]*", spec[position:]).group()
            position += len(name)
            sub = None
            if position < len(spec) and spec[position] == "[":
                position += 1
                sub = fields()
                position += 1  # the closing bracket
            if name.strip():
                found[name.strip()] = sub
            if position < len(spec) and spec[position] == ",":
                position += 1
                continue
            break
        return found

    return fields()


def select_fields(value: Any, fields: dict[str, Any] | None) -> Any:
    if isinstance(value, list):
        return [select_fields(v, fields) for v in value]
    if not isinstance(value, dict) or fields is None:
        return value
    names = list(value) if "*" in fields else list(fields)
    chosen = {"_class": value["_class"]} if "_class" in value else {}
    for name in names:
        if name in value:
            chosen[name] = select_fields(value[name], fields.get(name))
    return chosen
