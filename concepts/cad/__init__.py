"""Component attribution (CAD): which feed-forward weights carry a concept, and erasing or
amplifying it by zeroing them at inference time (design.md §5)."""

from .ablation import AblationHooks, AblationPlan, plan_ablation
from .attribution import AttributionConfig, attribute, objective_value
from .components import ff_layers

__all__ = ["AblationHooks", "AblationPlan", "AttributionConfig", "attribute", "ff_layers", "objective_value", "plan_ablation"]
