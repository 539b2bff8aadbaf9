"""platform/: the central cluster's tools as values for their upstream charts, checked three ways.

1. Against the charts: every key a values file sets must be in a short, hand-written extract of that chart's
   values.yaml (or of the template that reads it), with the type of the chart's default. The extracts below
   were read from the charts' repositories at the commits cited next to them; nothing upstream is vendored.
   None of these charts can be fetched here, so no `helm template` runs: the extracts are the whole check.
2. Against each other and the code: the names, hosts, ports and ids one file gives and another (or the
   portal's settings, adapters and the scaffolds' Jenkinsfile) relies on.
3. Against the walkthrough, platform/README.md: the PORTAL_* settings it sets exist, secret ones only in the
   Secret, and each takes what the values files define.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from integrations.nexus import NexusImageRegistry
from portal.config import Settings, env_name
from scaffolds import ScaffoldContext, render_source

ROOT = Path(__file__).resolve().parent.parent
PLATFORM = ROOT / "platform"
README = (PLATFORM / "README.md").read_text()
SETTINGS = {env_name(f.name): f for f in dataclasses.fields(Settings)}
STORAGE_CLASS = "gp3"


def values(tool: str) -> dict:
    return yaml.safe_load((PLATFORM / tool / "values.yaml").read_text())


# --- shapes: what the charts accept ----------------------------------------------------------------------------

ANY = object()  # the chart passes it through toYaml/tpl into a Kubernetes object or a config file


@dataclasses.dataclass(frozen=True)
class Each:
    """A map whose keys the user chooses, each value of one shape."""
    shape: object


@dataclasses.dataclass(frozen=True)
class ListOf:
    shape: object


NULL_OR_STR = (type(None), str)  # the chart's default is null; it takes a string


def shape_errors(ours: object, shape: object, path: str = "") -> list[str]:
    """Where a value of ours does not fit the chart's shape: an unknown key, or the wrong type."""
    if shape is ANY:
        return []
    if isinstance(shape, Each):
        if not isinstance(ours, dict):
            return [f"{path}: a map in the chart"]
        return [e for k, v in ours.items() for e in shape_errors(v, shape.shape, f"{path}.{k}")]
    if isinstance(shape, ListOf):
        if not isinstance(ours, list):
            return [f"{path}: a list in the chart"]
        return [e for i, v in enumerate(ours) for e in shape_errors(v, shape.shape, f"{path}[{i}]")]
    if isinstance(shape, dict):
        if not isinstance(ours, dict):
            return [f"{path}: a map in the chart, not {type(ours).__name__}"]
        errors = []
        for key, value in ours.items():
            if key not in shape:
                errors.append(f"{path}.{key}: not a value this chart reads")
            else:
                errors += shape_errors(value, shape[key], f"{path}.{key}")
        return errors
    types = shape if isinstance(shape, tuple) else (shape,)
    if isinstance(ours, bool) and bool not in types:  # YAML's true is not a number here
        return [f"{path}: {ours!r} where the chart has {'/'.join(t.__name__ for t in types)}"]
    return [] if isinstance(ours, types) else [f"{path}: {ours!r} where the chart has "
                                                f"{'/'.join(t.__name__ for t in types)}"]


# jenkinsci/helm-charts, charts/jenkins/values.yaml at 009051671726035566910d6affd886ed56429f93 (default plugins
# kubernetes:4423.vb_59f230b_ce53, git:5.10.1; agent image inbound-agent 3355.v388858a_47b_33-17). Keys marked
# "comment" are documented in a comment there and read by the templates. Types cross-read with the chart's
# values.schema.json at bc6bd10cde9f40ed082c3d41a5cc23361cff9751, which types every null default as "null" (so it
# would refuse controller.jenkinsUrl, persistence.storageClass, agent.namespace...): only its non-null types are
# relied on, and SCHEMA_TYPES below holds the ones our values use.
JENKINS = {
    "controller": {
        "jenkinsUrl": NULL_OR_STR, "installPlugins": ListOf(str), "additionalPlugins": ListOf(str),
        "initializeOnce": bool, "overwritePlugins": bool, "numExecutors": int, "resources": ANY,
        "javaOpts": NULL_OR_STR,
        "additionalExistingSecrets": ListOf({"name": str, "keyName": str}),
        "JCasC": {"defaultConfig": bool, "securityRealm": str, "authorizationStrategy": str,
                  "configScripts": Each(str)},
        "ingress": {"enabled": bool, "apiVersion": str, "ingressClassName": str,  # comment
                    "pathType": str, "path": NULL_OR_STR, "hostName": NULL_OR_STR, "annotations": Each(str),
                    "tls": ListOf({"hosts": ListOf(str), "secretName": str})},
    },
    "agent": {
        "enabled": bool, "namespace": NULL_OR_STR, "defaultsProviderTemplate": str, "podName": str,
        "customJenkinsLabels": ListOf(str), "resources": ANY, "podRetention": str, "showRawYaml": bool,
        "containerCap": int, "podTemplates": Each(str),
    },
    "serviceAccountAgent": {"create": bool, "automountServiceAccountToken": bool},
    "persistence": {"enabled": bool, "storageClass": NULL_OR_STR, "accessMode": str, "size": str},
}
SCHEMA_TYPES = {  # values.schema.json (commit above): "type" of each path we set
    "controller.installPlugins": list, "controller.additionalPlugins": list, "controller.numExecutors": int,
    "controller.overwritePlugins": bool, "controller.JCasC.securityRealm": str,
    "controller.JCasC.authorizationStrategy": str, "controller.JCasC.configScripts": dict,
    "controller.ingress.enabled": bool, "controller.ingress.tls": list, "agent.podTemplates": dict,
    "agent.containerCap": int, "agent.showRawYaml": bool, "persistence.size": str, "persistence.accessMode": str,
    "serviceAccountAgent.automountServiceAccountToken": bool,
}

# argoproj/argo-helm, charts/argo-cd/values.yaml at 2792db179fe467294435a32bc784936f42fa2a17 (7.x: dex v2.42.1,
# redis 7.4.2-alpine). configs.cm and configs.params are written key by key into argocd-cm and
# argocd-cmd-params-cm; applicationSet has no "enabled", only replicas. The chart ships no values.schema.json.
ARGOCD = {
    "global": {"domain": str},
    "configs": {
        "cm": Each((str, bool, int)), "params": Each((str, bool, int)),
        "rbac": {"policy.default": str, "policy.csv": str, "scopes": str},
        "credentialTemplates": Each({"url": str, "username": str, "password": str}),
        "secret": {"createSecret": bool},
    },
    "applicationSet": {"replicas": int},
    "dex": {"enabled": bool},
    "notifications": {"enabled": bool},
    "controller": {"resources": ANY},
    "repoServer": {"resources": ANY},
    "server": {
        "resources": ANY, "service": {"type": str},
        "ingress": {"enabled": bool, "controller": str, "ingressClassName": str, "hostname": str, "path": str,
                    "pathType": str, "annotations": Each(str), "tls": bool},
    },
}

# sonatype/nxrm3-helm-repository, nexus-repository-manager/values.yaml at 01dd44acdc8fd98eb83a9e47f3473c01d198c370
# (chart 54.0.0); templates/deployment.yaml at 2f2f0aea1b6a499e737cc4f84108ba62bbfdcb0b (nexus.env, resources,
# securityContext, probes' path); templates/ingress.yaml at 11e12ba57adecba846af705b5dc359e94d4657e0, whose
# backend is "port: number: 8081" whatever nexus.nexusPort says. persistence.storageClass is in a comment.
NEXUS = {
    "image": {"repository": str, "tag": str, "pullPolicy": str},
    "nexus": {
        "docker": {"enabled": bool},
        "env": ListOf({"name": str, "value": str}),
        "nexusPort": int, "resources": ANY,
        "securityContext": {"runAsUser": int, "runAsGroup": int, "fsGroup": int},
        "livenessProbe": {"initialDelaySeconds": int, "periodSeconds": int, "failureThreshold": int,
                          "timeoutSeconds": int, "path": str},
        "readinessProbe": {"initialDelaySeconds": int, "periodSeconds": int, "failureThreshold": int,
                           "timeoutSeconds": int, "path": str},
    },
    "deploymentStrategy": str,
    "ingress": {"enabled": bool, "ingressClassName": str, "hostRepo": str, "hostPath": str,
                "annotations": Each(str)},
    "service": {"type": str},
    "persistence": {"enabled": bool, "accessMode": str, "storageClass": str, "storageSize": str},
}
NEXUS_INGRESS_BACKEND_PORT = 8081

# elastic/cloud-on-k8s, deploy/eck-stack/charts/eck-elasticsearch/values.yaml at
# af2852fd4c4d882a26a79c542445da7222d4ee25 (chart 0.16.0, Elasticsearch 9.1.0 by default) and
# templates/elasticsearch.yaml at 391a21b8348e54cab84923ad92c6d265e69d4a37: http and nodeSets go as they are into
# the Elasticsearch resource; "image" only when set; volumeClaimDeletePolicy one of two values; the resource is
# annotated eck.k8s.elastic.co/license: basic. The values' comments show http.service.spec.type: LoadBalancer
# and http.tls.selfSignedCertificate.subjectAltNames: [{dns: ...}].
ELASTICSEARCH = {
    "fullnameOverride": str, "version": str, "image": str,
    "http": {"service": {"metadata": {"annotations": Each(str)}, "spec": ANY},
             "tls": {"selfSignedCertificate": {"disabled": bool, "subjectAltNames": ListOf({"dns": str})}}},
    "nodeSets": ListOf({"name": str, "count": int, "config": Each(ANY), "podTemplate": ANY,
                        "volumeClaimTemplates": ListOf({"metadata": {"name": str}, "spec": ANY})}),
    "volumeClaimDeletePolicy": str,
    "ingress": {"enabled": bool},
}
VOLUME_CLAIM_DELETE_POLICIES = ("DeleteOnScaledownOnly", "DeleteOnScaledownAndClusterDeletion")
ECK_DATA_VOLUME = "elasticsearch-data"  # the claim name ECK mounts as the data directory (ECK's documentation)
ECK_HTTP_PORT = 9200

# elastic/cloud-on-k8s, deploy/eck-stack/charts/eck-kibana/values.yaml at 03b096ec85bcd72429d2d6077d2aa8140ad85777
# (a release before 0.16.0, whose Chart.yaml was read at 014a3a65d961642c592c398086d61fb9fb55b3c0),
# templates/kibana.yaml at 002018ad57a9f39b051b4b55d06599746c6d71ca (each key top-level or, deprecated, under spec)
# and templates/ingress.yaml at 0e0e19e81fb07da8200c0c89261176bc555a5a02 (className, hosts[].host/path).
KIBANA = {
    "fullnameOverride": str, "version": str, "count": int, "elasticsearchRef": {"name": str, "namespace": str},
    "config": Each((str, bool, int)), "http": ANY, "podTemplate": ANY,
    "ingress": {"enabled": bool, "className": str, "pathType": str, "annotations": Each(str),
                "hosts": ListOf({"host": str, "path": str}), "tls": {"enabled": bool, "secretName": str}},
}

CHARTS = {"jenkins": JENKINS, "argocd": ARGOCD, "nexus": NEXUS, "elasticsearch": ELASTICSEARCH, "kibana": KIBANA}


@pytest.mark.parametrize("tool", sorted(CHARTS))
def test_every_value_set_is_one_the_chart_reads_in_its_shape(tool):
    assert shape_errors(values(tool), CHARTS[tool]) == []


def test_the_shape_check_catches_what_it_should():
    assert shape_errors({"persistence": {"size": 8}}, JENKINS) == [".persistence.size: 8 where the chart has str"]
    assert shape_errors({"agent": {"namspace": "x"}}, JENKINS) == [".agent.namspace: not a value this chart reads"]
    assert shape_errors({"dex": {"enabled": "no"}}, ARGOCD)


def test_the_jenkins_values_have_the_types_of_the_charts_schema():
    def at(path):
        node = values("jenkins")
        for part in path.split("."):
            node = node[part]
        return node
    for path, kind in SCHEMA_TYPES.items():
        assert isinstance(at(path), kind), path


# --- storage, and what the first team learnt ---------------------------------------------------------------------

def storage_class_in_readme() -> dict:
    manifest = re.search(r"<<'EOF'\n(apiVersion: storage\.k8s\.io/v1\n.*?)\nEOF", README, re.DOTALL)
    assert manifest, "the README creates no StorageClass"
    return yaml.safe_load(manifest.group(1))


def test_every_volume_is_on_the_storage_class_the_readme_makes_with_the_ebs_csi_driver():
    made = storage_class_in_readme()
    assert made["metadata"]["name"] == STORAGE_CLASS and made["provisioner"] == "ebs.csi.aws.com"
    assert made["volumeBindingMode"] == "WaitForFirstConsumer"  # EBS volumes are zonal
    used = [values("jenkins")["persistence"]["storageClass"], values("nexus")["persistence"]["storageClass"]]
    for node_set in values("elasticsearch")["nodeSets"]:
        used += [claim["spec"]["storageClassName"] for claim in node_set["volumeClaimTemplates"]]
    assert used and set(used) == {STORAGE_CLASS}


def test_elasticsearch_is_a_load_balancer_with_security_on_the_default_image():
    es = values("elasticsearch")
    assert es["http"]["service"]["spec"]["type"] == "LoadBalancer"  # a NodePort was unreachable from team clusters
    assert "oss" not in es.get("image", "") and "oss" not in es["version"]  # the OSS image has no X-Pack security
    assert es["http"]["tls"]["selfSignedCertificate"].get("disabled") is not True
    settings = {k: v for node_set in es["nodeSets"] for k, v in node_set.get("config", {}).items()}
    assert not any(k.startswith("xpack.security") for k in settings), "ECK runs security; leave it on"
    assert es["volumeClaimDeletePolicy"] in VOLUME_CLAIM_DELETE_POLICIES
    for node_set in es["nodeSets"]:
        assert [c["metadata"]["name"] for c in node_set["volumeClaimTemplates"]] == [ECK_DATA_VOLUME]


def test_kibana_follows_elasticsearch():
    es, kibana = values("elasticsearch"), values("kibana")
    assert kibana["elasticsearchRef"]["name"] == es["fullnameOverride"]
    assert kibana["version"] == es["version"]
    host = kibana["ingress"]["hosts"][0]["host"]
    assert kibana["config"]["server.publicBaseUrl"] == f"https://{host}"


# --- the walkthrough's settings ----------------------------------------------------------------------------------

def portal_values() -> dict:
    """The my-values.yaml of the README's step 7."""
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", README, re.DOTALL)]
    found = [b for b in blocks if isinstance(b, dict) and "config" in b]
    assert len(found) == 1, "the README should show one values file for the portal's chart"
    return found[0]


CONFIG = portal_values()["config"]


def setting_host(name: str) -> str:
    return urlsplit(CONFIG[name]).hostname


def test_every_portal_setting_the_readme_names_exists():
    # The lines a build prints for the portal (PORTAL_IMAGE_DIGEST=...) are the Jenkinsfile's, not settings.
    jenkinsfile = (ROOT / "scaffolds" / "common" / "Jenkinsfile.j2").read_text()
    console_lines = set(re.findall(r'echo "(PORTAL_[A-Z0-9_]+)=', jenkinsfile))
    named = set(re.findall(r"PORTAL_[A-Z0-9_]+", README)) - console_lines
    assert console_lines and named and named <= set(SETTINGS), sorted(named - set(SETTINGS))


def test_secret_settings_go_into_the_secret_and_the_others_into_config():
    in_secret = set(re.findall(r"--from-literal=(PORTAL_[A-Z0-9_]+)=", README))
    assert in_secret and all(SETTINGS[name].metadata.get("secret") for name in in_secret)
    assert not [name for name in CONFIG if SETTINGS[name].metadata.get("secret")]
    for name in ("PORTAL_JENKINS_TOKEN", "PORTAL_NEXUS_PASSWORD", "PORTAL_ARGOCD_TOKEN", "PORTAL_LOGS_PASSWORD"):
        assert name in in_secret
    made = re.findall(r"create secret generic (\S+) \\\n\s+--from-literal=PORTAL_", README)
    assert made == [portal_values()["existingSecret"]]


def test_jenkins_gives_the_portal_its_url_user_and_checkout_credential():
    jenkins = values("jenkins")
    controller = jenkins["controller"]
    assert CONFIG["PORTAL_JENKINS_URL"] == controller["jenkinsUrl"]
    assert setting_host("PORTAL_JENKINS_URL") == controller["ingress"]["hostName"]
    realm = yaml.safe_load(controller["JCasC"]["securityRealm"])
    assert CONFIG["PORTAL_JENKINS_USER"] in [user["id"] for user in realm["local"]["users"]]
    credentials = yaml.safe_load(controller["JCasC"]["configScripts"]["gitlab-checkout"])
    ids = [c["usernamePassword"]["id"]
           for domain in credentials["credentials"]["system"]["domainCredentials"] for c in domain["credentials"]]
    assert CONFIG["PORTAL_JENKINS_CREDENTIALS_ID"] in ids
    assert SETTINGS["PORTAL_JENKINS_CREDENTIALS_ID"].default in ids  # jobs made before the setting was set


def test_the_portals_jenkins_user_may_manage_jobs_but_not_jenkins():
    strategy = yaml.safe_load(values("jenkins")["controller"]["JCasC"]["authorizationStrategy"])
    rights = {entry["user"]["name"]: set(entry["user"]["permissions"])
              for entry in strategy["globalMatrix"]["entries"] if "user" in entry}
    portal = rights[CONFIG["PORTAL_JENKINS_USER"]]
    assert {"Job/Create", "Job/Configure", "Job/Build", "Job/Read", "Job/Delete", "Overall/Read"} <= portal
    assert "Overall/Administer" not in portal


def test_jenkins_has_the_plugins_the_portal_and_its_pipelines_use():
    controller = values("jenkins")["controller"]
    names = {p.split(":")[0] for p in controller["installPlugins"] + controller["additionalPlugins"]}
    assert {"kubernetes", "workflow-aggregator", "git", "configuration-as-code", "credentials-binding",
            "cloudbees-folder", "matrix-auth"} <= names


def test_every_secret_jcasc_reads_is_mounted():
    controller = values("jenkins")["controller"]
    jcasc = controller["JCasC"]
    text = "\n".join([jcasc["securityRealm"], jcasc["authorizationStrategy"], *jcasc["configScripts"].values()])
    mounted = {f"{s['name']}-{s['keyName']}" for s in controller["additionalExistingSecrets"]}
    used = set(re.findall(r"\$\{([a-z0-9-]+)\}", text))
    assert used and used - {"chart-admin-username", "chart-admin-password"} <= mounted
    for secret in {s["name"] for s in controller["additionalExistingSecrets"]}:
        assert f"-n jenkins create secret generic {secret} " in README


def jenkinsfile_pod() -> dict:
    ctx = ScaffoldContext(team="payments", project="shop", application="cart", registry="nexus.example.com",
                          image="docker-payments/shop-cart")
    jenkinsfile = render_source("python-web", ctx)["Jenkinsfile"].decode()
    return yaml.safe_load(jenkinsfile.split("yaml '''")[1].split("'''")[0])


def test_the_kaniko_template_builds_like_the_scaffolds_jenkinsfile():
    [template] = yaml.safe_load(values("jenkins")["agent"]["podTemplates"]["kaniko"])
    ours = yaml.safe_load(template["yaml"])["spec"]
    theirs = jenkinsfile_pod()["spec"]
    kaniko = {c["name"]: c for c in theirs["containers"]}["kaniko"]
    assert ours["containers"] == [kaniko]
    assert ours["volumes"] == theirs["volumes"]
    assert ours["automountServiceAccountToken"] is theirs["automountServiceAccountToken"] is False
    assert not any((c.get("securityContext") or {}).get("privileged") for c in ours["containers"])


def test_the_push_secret_is_made_in_the_agents_namespace_for_the_registry_host():
    agent = values("jenkins")["agent"]
    [volume] = jenkinsfile_pod()["spec"]["volumes"]
    secret = volume["secret"]["secretName"]
    assert secret == ScaffoldContext(team="t", project="p", application="a", registry="r", image="i").push_secret
    made = re.search(rf"kubectl -n (\S+) create secret docker-registry {secret} \\\n\s+--docker-server=(\S+) ", README)
    assert made and made.group(1) == agent["namespace"]
    assert made.group(2) == setting_host("PORTAL_NEXUS_DOCKER_URL")  # where the pipeline pushes
    assert volume["secret"]["items"] == [{"key": ".dockerconfigjson", "path": "config.json"}]  # docker-registry's key
    assert f"kubectl label namespace {agent['namespace']} pod-security.kubernetes.io/enforce=baseline" in README


def test_the_registry_is_nexus_own_port_behind_its_ingress():
    nexus = values("nexus")
    assert nexus["nexus"]["nexusPort"] == NEXUS_INGRESS_BACKEND_PORT
    assert setting_host("PORTAL_NEXUS_DOCKER_URL") == setting_host("PORTAL_NEXUS_URL") == nexus["ingress"]["hostRepo"]
    # No connector port: the portal creates none, so a Docker port on the chart would serve no repository.
    assert nexus["nexus"]["docker"]["enabled"] is False
    settings = Settings().replace({"nexus_url": CONFIG["PORTAL_NEXUS_URL"],
                                   "nexus_docker_url": CONFIG["PORTAL_NEXUS_DOCKER_URL"]})
    registry = NexusImageRegistry.from_settings(settings)
    try:
        assert registry.http_port is None and registry.docker_routing == "path"
        assert registry.image_name("payments/shop-cart") == f"{nexus['ingress']['hostRepo']}/docker-payments/shop-cart"
    finally:
        registry.close()
    # Path-based routing for Docker came with Nexus 3.83.
    assert tuple(int(n) for n in nexus["image"]["tag"].split(".")[:2]) >= (3, 83)
    assert not any("UseCGroupMemoryLimitForHeap" in e["value"] for e in nexus["nexus"]["env"])
    assert f'"userId": "{CONFIG["PORTAL_NEXUS_USER"]}"' in README


def test_argocd_gives_the_portal_an_account_that_may_get_and_sync_only():
    argocd = values("argocd")
    accounts = {k.split(".", 1)[1]: v for k, v in argocd["configs"]["cm"].items() if k.startswith("accounts.")}
    [(account, capabilities)] = accounts.items()
    assert capabilities == "apiKey"
    assert f"argocd account generate-token --account {account} " in README
    policy = [[part.strip() for part in line.split(",")]
              for line in argocd["configs"]["rbac"]["policy.csv"].splitlines() if line.strip()]
    roles = {g[2] for g in policy if g[0] == "g" and g[1] == account}
    grants = {(p[2], p[3]) for p in policy if p[0] == "p" and p[1] in roles and p[5] == "allow"}
    assert grants == {("applications", "get"), ("applications", "sync")}
    assert argocd["configs"]["rbac"]["policy.default"] == ""


def test_argocd_is_where_the_portal_looks_for_it():
    argocd = values("argocd")
    assert setting_host("PORTAL_ARGOCD_URL") == argocd["server"]["ingress"]["hostname"] == argocd["global"]["domain"]
    namespace = CONFIG["PORTAL_ARGOCD_NAMESPACE"]
    assert namespace == SETTINGS["PORTAL_ARGOCD_NAMESPACE"].default
    assert f"helm upgrade --install argocd argo/argo-cd -n {namespace} " in README
    assert "PORTAL_ARGOCD_KUBECONFIG" not in CONFIG  # in-cluster: the portal chart's ServiceAccount


def test_argocd_reads_the_portals_gitlab_group_without_a_token_in_the_file():
    [template] = values("argocd")["configs"]["credentialTemplates"].values()
    group = CONFIG["PORTAL_GITLAB_PARENT_GROUP"]
    assert template["url"] == f"{CONFIG['PORTAL_GITLAB_URL']}/{group}/"
    assert "password" not in template
    assert "--set configs.credentialTemplates.gitlab.password=" in README


def test_the_portal_and_fluent_bit_reach_elasticsearch_by_the_name_in_its_certificate():
    es = values("elasticsearch")
    names = [san["dns"] for san in es["http"]["tls"]["selfSignedCertificate"]["subjectAltNames"]]
    url = urlsplit(CONFIG["PORTAL_LOGS_URL"])
    assert url.scheme == "https" and url.hostname in names and url.port == ECK_HTTP_PORT
    assert f"host={url.hostname}`, `port={url.port}`" in README  # the central-logs Secret of every team cluster
    fluent_bit = yaml.safe_load((PLATFORM / "fluent-bit" / "values.yaml").read_text())
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in fluent_bit["env"]} == {"central-logs"}
    assert CONFIG["PORTAL_LOGS"] == "elasticsearch" and CONFIG["PORTAL_LOGS_USER"] in README.split("_security/user/")[1]


def test_the_web_tools_share_one_alb_and_the_portal_links_to_their_public_hosts():
    groups = [values("jenkins")["controller"]["ingress"]["annotations"],
              values("argocd")["server"]["ingress"]["annotations"], values("nexus")["ingress"]["annotations"],
              values("kibana")["ingress"]["annotations"], portal_values()["ingress"]["annotations"]]
    assert {g["alb.ingress.kubernetes.io/group.name"] for g in groups} == {"platform"}
    assert all(g["alb.ingress.kubernetes.io/target-type"] == "ip" for g in groups)  # ClusterIP Services
    # Attributes of the one shared ALB: the controller refuses a group whose Ingresses disagree on them.
    attributes = {g["alb.ingress.kubernetes.io/load-balancer-attributes"] for g in groups
                  if "alb.ingress.kubernetes.io/load-balancer-attributes" in g}
    assert len(attributes) <= 1
    assert setting_host("PORTAL_PUBLIC_URL") == portal_values()["ingress"]["host"]
