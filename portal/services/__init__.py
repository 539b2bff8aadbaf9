"""The only layer that commits, checks permissions, enqueues jobs and calls integrations."""
