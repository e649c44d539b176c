"""Model promotion: `challenger` vs `champion` on the same evaluation data, alias switch, rollback, skip rule.

Rules:

* Both versions are compared on the same evaluation data. A version's evaluation data is identified by the
  sha256 (12 hex) of the `eval.json` snapshot of its run's data version (`outputs/data/<version>/eval.json`,
  written by the retrain flow); where that file is not on this machine, by the data version itself. When the
  two differ, both versions are re-scored on the challenger's evaluation data with
  `tasks.pipeline.evaluation.evaluate_model` (logged run metrics are used otherwise).
* Promote only if `metric` (F1, 0-100) improves by at least `margin` points and no guarded metric (v2
  `HasAns_f1`, `NoAns_f1` by default; ignored where either side lacks it) drops by more than `tolerance`.
* The best known wins: another registered version (not the champion, compared above) whose logged `metric` on
  the same evaluation data is higher than the challenger's refuses the promotion, and so does any such version when
  there is no champion yet (the first champion must beat every registered version on its evaluation data).
  Versions scored on other data are shown, not compared.
* `force` promotes a refused challenger anyway; the overridden reason is in the decision and in the version tag
  `qaflow.promotion.forced`.
* The alias switch never leaves the model without a champion: `champion` is moved to the new version first,
  then `previous-champion` is pointed at the old one. Rollback moves `champion` back to `previous-champion`,
  then removes that alias (a second rollback needs a new promotion in between).
* Who (`getpass.getuser()`), when (UTC ISO time) and why (the reason with the numbers) are recorded as
  model-version tags `qaflow.promotion.*` (the challenger, promoted or not) and `qaflow.rollback.*`.

The rooms: `decision` (the Decision record, aliases, version tags), `scores` (logged and re-scored metrics, the
comparison), `promotion` (`promote`), `champion` (`rollback`, the skip rule). This package re-exports the public
names, so callers import from `tasks.pipeline.promote`.
"""

from tasks.pipeline.promote.champion import champion_unchanged, rollback
from tasks.pipeline.promote.decision import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    Decision,
    PromotionError,
    switch_champion,
)
from tasks.pipeline.promote.promotion import promote
from tasks.pipeline.promote.scores import (
    DEFAULT_GUARDS,
    Scored,
    compare_scores,
    eval_metrics,
    evaluated_scores,
    logged_scores,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_GUARDS",
    "PREVIOUS",
    "Decision",
    "PromotionError",
    "Scored",
    "champion_unchanged",
    "compare_scores",
    "eval_metrics",
    "evaluated_scores",
    "logged_scores",
    "promote",
    "rollback",
    "switch_champion",
]
