"""The four-choice web app's pieces: the durable interaction log and its export.

``InteractionLog`` (``store``) records every session, every image shown and
every pick in SQLite; ``create_app`` (``app``) is the HTTP API over it;
``export_pir_dataset`` (``export``) turns the log into a PIR dataset that
``stage=estimate`` trains on; ``page`` is the HTML page the app serves at
``/`` and ``serve`` the ``pirtune-serve`` command; ``describe`` puts a
finished session's image into words; ``crowd`` is ``pirtune-crowd``,
simulated people with a hidden objective using a running server over HTTP.
``pirtune-train data=interactions`` runs the loop on the log (a choice model
of the picks, tuning, evaluation), and the tuned generator can be served back.
"""

from pirtune.webapp.export import export_pir_dataset
from pirtune.webapp.store import ConflictError, InteractionLog, UnknownSessionError

__all__ = ["ConflictError", "InteractionLog", "UnknownSessionError", "export_pir_dataset"]
