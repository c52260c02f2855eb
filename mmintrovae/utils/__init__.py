"""Tools that are no part of training: :mod:`.benchmark` (imported on demand)."""
