"""Adapters: the outside systems (flags, registry, metrics, dashboards, tickets) behind small protocols."""
