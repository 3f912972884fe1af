"""The ten tools as Temporal activities: typed args in, a receipt out, exactly once in effect."""
