"""The Erase / amplify panel: component attribution (CAD) and its ablation, UCE's closed-form
cross-attention edit, the repair that measures CAD's limit, and their figures and rates (docs/cad.md)."""

from .ablation import AblationHooks, AblationPlan, plan_ablation
from .attribution import AttributionConfig, attribute, objective_value
from .components import ff_layers

__all__ = ["AblationHooks", "AblationPlan", "AttributionConfig", "attribute", "ff_layers", "objective_value", "plan_ablation"]
