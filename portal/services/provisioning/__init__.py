"""Provisioning: the chain of steps (steps), its resumable execution (engine), and what users do with it (runs)."""
