SELECT
  'e' AS source,
  MAX(loaded_at) AS hi
FROM "exposures"
WHERE
  exp_key = 'pricing-annual-discount' AND loaded_at > 10
UNION ALL
SELECT
  's0' AS source,
  MAX(loaded_at) AS hi
FROM "metric_events"
WHERE
  exp_key = 'pricing-annual-discount' AND loaded_at > 10
UNION ALL
SELECT
  'c0' AS source,
  MAX(loaded_at) AS hi
FROM "pre_period"
WHERE
  exp_key = 'pricing-annual-discount' AND loaded_at > 10
