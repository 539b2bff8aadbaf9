"""Adapters to the outside systems (GitLab, Jenkins, Nexus, Argo CD, Kubernetes, the log store).

One module per system; no Flask imports here. The contracts arrive with the provisioning engine.
"""
