#!/bin/sh
# Register the search attributes abrollout's workflows set (workflows/search_attributes.py) as Keyword, so
# experiments can be listed by state, domain and metric. Safe to run again. The compose stack runs it once after
# the server is healthy; it works against any cluster too:
#   TEMPORAL_ADDRESS=temporal.example.internal:7233 TEMPORAL_NAMESPACE=default sh deploy/create-search-attributes.sh
set -eu

address="${TEMPORAL_ADDRESS:-localhost:7233}"
namespace="${TEMPORAL_NAMESPACE:-default}"
attempts="${SEARCH_ATTRIBUTE_ATTEMPTS:-60}"

listed() {
    temporal operator search-attribute list --address "$address" --namespace "$namespace"
}

# auto-setup creates the namespace in the background once the server answers: wait until it exists.
tries=1
until listed >/dev/null 2>&1; do
    if [ "$tries" -ge "$attempts" ]; then
        echo "namespace '$namespace' at $address not ready after $attempts tries" >&2
        exit 1
    fi
    tries=$((tries + 1))
    sleep 2
done

for name in ExperimentDomain ExperimentState PrimaryMetric; do
    if listed | grep -qw "$name"; then
        echo "$name: already registered"
    else
        temporal operator search-attribute create --address "$address" --namespace "$namespace" \
            --name "$name" --type Keyword
        echo "$name: registered"
    fi
done
