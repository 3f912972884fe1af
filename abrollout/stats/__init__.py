"""Statistics for abrollout: sufficient statistics, group-sequential and always-valid tests, SRM, power.

Import-light on purpose: this package module imports nothing, so the Temporal workflow sandbox can import
`abrollout.contracts.verdicts` and `abrollout.run.decision` without pulling in numpy or scipy. The modules
below need numpy/scipy and are used from activities and the bench:

- `sufficient`: SufficientStats / JointStats (frozen, `+` merges), mean, ratio (delta method) and CUPED summaries
- `effects`: absolute and relative effects with standard errors
- `boundaries`: alpha-spending functions and group-sequential boundaries for arbitrary information fractions
- `multiple`: Holm's step-down on group-sequential boundaries (A/B/n)
- `always_valid`: normal-mixture mSPRT and confidence sequences tuned from the MDE
- `srm`: chi-square sample-ratio-mismatch test
- `power`: sample size and days to reach the MDE
- `checkpoint`: `evaluate_check(plan, data) -> CheckVerdict`, the single entry point for CheckMetrics
"""
