"""Four-choice personal search (*Personalized generative model via active learning*).

A person refines one image by picking the best of four candidates, again and
again. ``AxisSearch`` is the paper's algorithm, ``PreferenceSearch`` a
Bayesian search that learns from every answer, ``RandomSearch`` the baseline;
all share ``propose()`` / ``choose(answer)`` (``FourChoiceSearch``; an answer is a
``Feedback``: pick 0–3, or "these look the same") and move in
a ``SearchSpace``, optionally under a ``Visible`` metric that sizes their steps
by what the eye sees. ``SimulatedPerson`` picks for tests and benchmarks, and
``rounds_lower_bound`` is the information-theoretic limit. Nothing here reads
or writes files.
"""

from pirtune.search.axis import AxisSearch, RandomSearch
from pirtune.search.base import FourChoiceSearch, Proposal, satisfaction_radius
from pirtune.search.bound import rounds_lower_bound
from pirtune.search.feedback import SAME, Feedback, as_feedback
from pirtune.search.people import SimulatedPerson
from pirtune.search.preference import PreferenceSearch
from pirtune.search.session import Session, simulate
from pirtune.search.space import PrincipalDirections, SearchSpace, principal_directions
from pirtune.search.visible import PixelMetric, Visible

__all__ = [
    "AxisSearch",
    "Feedback",
    "SAME",
    "as_feedback",
    "FourChoiceSearch",
    "PixelMetric",
    "PreferenceSearch",
    "Proposal",
    "RandomSearch",
    "SearchSpace",
    "Session",
    "SimulatedPerson",
    "Visible",
    "PrincipalDirections",
    "principal_directions",
    "rounds_lower_bound",
    "satisfaction_radius",
    "simulate",
]
