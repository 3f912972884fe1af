"""Warehouses as metrics sources: one generator's SQL (abrollout/warehouse) run by a small engine per warehouse."""
