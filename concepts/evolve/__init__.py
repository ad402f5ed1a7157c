"""The Evolution panel: one generation followed step by step (previews, concept maps, decision
steps), its figures and exports."""
