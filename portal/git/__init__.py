"""Git over HTTP, served by the portal for its built-in Git host."""
