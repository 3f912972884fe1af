"""Search attributes that make experiments findable: `ExperimentState='running'` in the UI or CLI."""

from temporalio.common import SearchAttributeKey

EXPERIMENT_DOMAIN = SearchAttributeKey.for_keyword("ExperimentDomain")
EXPERIMENT_STATE = SearchAttributeKey.for_keyword("ExperimentState")
PRIMARY_METRIC = SearchAttributeKey.for_keyword("PrimaryMetric")

ALL = (EXPERIMENT_DOMAIN, EXPERIMENT_STATE, PRIMARY_METRIC)
