"""Tools for testing with crdtsync: a simulated network, rooms of peers, traces, virtual time.

Applications use ``SimNetwork`` and ``sim_room`` (or the pytest fixtures ``sim_network`` and
``sim_peers``) to simulate collaborators in their own test suites.
"""

from crdtsync.testing.convergence import converged, doc_version, wait_converged
from crdtsync.testing.room import sim_room
from crdtsync.transport.memory import SimNetwork

__all__ = ["SimNetwork", "converged", "doc_version", "sim_room", "wait_converged"]
