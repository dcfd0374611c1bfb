"""Pure data layer: studies, labels, metrics, phantoms. Imports neither torch nor Qt."""
