"""Real servers on one machine, for the test suite and the one-command demo.

Each server runs in its own throwaway directory, is started by this package,
waits on a real health check (never a sleep), and is stopped by the process id
recorded when it started. A missing binary raises MissingComponent, whose
message says how to get it: tests fail with it, never skip.
"""

from testbed.process import MissingComponent, ServerProcess

__all__ = ["MissingComponent", "ServerProcess"]
