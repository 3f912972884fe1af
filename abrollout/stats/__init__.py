"""Statistics for abrollout: sufficient statistics, group-sequential and always-valid tests, SRM, power.

This package module imports nothing, so importing one module loads only what that module needs. The modules need
numpy/scipy and run in activities, the spec check and the bench, never in workflow code; CheckMetrics enters through
`checkpoint.evaluate_check`. The modules, references and formulas: docs/statistics.md.
"""
