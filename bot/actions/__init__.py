"""The govbot action server (rasa-sdk): answers from the knowledge base, clarifies, hands off, rates.

Run it with `python -m bot.actions.serve` (127.0.0.1:5055, /health). The contract with the dialogue core
is bot/CONTRACT.md.
"""

from .answer import ActionAnswer
from .candidates import ActionNextCandidate
from .clarify import ActionClarify
from .forms import ActionAskSituation, ValidateSituationForm
from .handoff import ActionHandoff
from .rate import ActionRate

__all__ = [
    "ActionAnswer", "ActionAskSituation", "ActionClarify", "ActionHandoff", "ActionNextCandidate", "ActionRate",
    "ValidateSituationForm",
]
