"""The chronoraft worker: runs attempts handed out by the leader and reports their results.

Imports only ``proto`` and ``common`` (never ``controller``), so a worker image needs nothing of
the controller and the two sides can only meet through the wire protocol.
"""
