"""Operations endpoints: liveness, readiness and Prometheus metrics, for probes and scrapers, not people."""
