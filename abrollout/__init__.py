"""abrollout: the pure domain core (contracts, policy, statistics, decisions, bucketing, rules, planner).

Nothing in this package imports Temporal or performs I/O, so it is unit tested directly and is safe to
import inside the Temporal workflow sandbox (except `abrollout.stats.*`, which needs numpy/scipy and is
only used from activities).
"""
