"""The controller's engine, split as kopf's reactor is (``kopf/_core/reactor/``).

- ``intake``: observation. Watch events (and resyncs', and our own writes' answers) into
  the inventory; the rounds they call for into the queues; deletions, and 404s awaiting
  their DELETED event.
- ``queueing``: the work queues (per name, like client-go's), the fair shares of the
  provider workers (parking per name too), the delays of retries and status restores.
- ``processing``: the storage and CallType rounds the workers run.
- ``validating``: a storage round's provider call, in the thread pool, under a deadline.
- ``flights``: identical validations in flight share one request.
- ``status``: what the operator last wrote, per uid, and the one exit point per kind
  through which every status write goes.
- ``resync``: the LIST that replaces the inventory (client-go's Replace), and when.

``callstorage.controller.Controller`` wires the parts and starts and stops them; what to
do is decided by the pure functions of ``callstorage.reconcile``.
"""
