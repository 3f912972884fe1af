WITH b_e AS (
  SELECT
    CAST(user_id AS STRING) AS user_id,
    MIN(CAST(arm AS STRING)) AS arm,
    MAX(at_s) AS latest
  FROM `exposures`
  WHERE
    exp_key = 'pricing-annual-discount' AND loaded_at > 10 AND loaded_at <= 20
  GROUP BY
    CAST(user_id AS STRING)
), b_s0 AS (
  SELECT
    CAST(user_id AS STRING) AS user_id,
    SUM(
      CASE
        WHEN (
          metric = 'annual_conversion'
        )
        THEN CAST(FLOOR(CAST(value AS DOUBLE) * 1000000 + 0.5) AS BIGINT)
      END
    ) AS y0,
    MAX(CASE WHEN (
      metric = 'annual_conversion'
    ) THEN at_s END) AS t0,
    SUM(
      CASE
        WHEN (
          metric = 'refunds'
        )
        THEN CAST(FLOOR(CAST(value AS DOUBLE) * 1000000 + 0.5) AS BIGINT)
      END
    ) AS y1,
    MAX(CASE WHEN (
      metric = 'refunds'
    ) THEN at_s END) AS t1,
    SUM(
      CASE
        WHEN (
          metric = 'revenue_per_user'
        )
        THEN CAST(FLOOR(CAST(value AS DOUBLE) * 1000000 + 0.5) AS BIGINT)
      END
    ) AS y2,
    MAX(CASE WHEN (
      metric = 'revenue_per_user'
    ) THEN at_s END) AS t2,
    SUM(
      CASE
        WHEN (
          metric = 'orders'
        )
        THEN CAST(FLOOR(CAST(value AS DOUBLE) * 1000000 + 0.5) AS BIGINT)
      END
    ) AS y3,
    MAX(CASE WHEN (
      metric = 'orders'
    ) THEN at_s END) AS t3
  FROM `metric_events`
  WHERE
    exp_key = 'pricing-annual-discount'
    AND loaded_at > 10
    AND loaded_at <= 20
    AND (
      (
        metric = 'annual_conversion'
      )
      OR (
        metric = 'refunds'
      )
      OR (
        metric = 'revenue_per_user'
      )
      OR (
        metric = 'orders'
      )
    )
  GROUP BY
    CAST(user_id AS STRING)
), b_c0 AS (
  SELECT
    CAST(user_id AS STRING) AS user_id,
    SUM(
      CASE
        WHEN (
          metric = 'revenue_per_user'
        )
        THEN CAST(FLOOR(CAST(value AS DOUBLE) * 1000000 + 0.5) AS BIGINT)
      END
    ) AS x2,
    CAST(COUNT(CASE WHEN (
      metric = 'revenue_per_user'
    ) THEN 1 END) AS BIGINT) AS nx2
  FROM `pre_period`
  WHERE
    exp_key = 'pricing-annual-discount'
    AND loaded_at > 10
    AND loaded_at <= 20
    AND (
      (
        metric = 'revenue_per_user'
      )
    )
  GROUP BY
    CAST(user_id AS STRING)
), batch AS (
  SELECT
    user_id,
    MIN(arm) AS arm,
    MAX(latest) AS latest,
    MAX(t0) AS t0,
    MAX(t1) AS t1,
    MAX(t2) AS t2,
    MAX(t3) AS t3,
    SUM(y0) AS y0,
    SUM(y1) AS y1,
    SUM(y2) AS y2,
    SUM(y3) AS y3,
    SUM(x2) AS x2,
    SUM(nx2) AS nx2
  FROM (
    SELECT
      user_id,
      arm AS arm,
      CAST(latest AS BIGINT) AS latest,
      CAST(NULL AS BIGINT) AS t0,
      CAST(NULL AS BIGINT) AS t1,
      CAST(NULL AS BIGINT) AS t2,
      CAST(NULL AS BIGINT) AS t3,
      CAST(NULL AS BIGINT) AS y0,
      CAST(NULL AS BIGINT) AS y1,
      CAST(NULL AS BIGINT) AS y2,
      CAST(NULL AS BIGINT) AS y3,
      CAST(NULL AS BIGINT) AS x2,
      CAST(NULL AS BIGINT) AS nx2
    FROM b_e
    UNION ALL
    SELECT
      user_id,
      CAST(NULL AS STRING) AS arm,
      CAST(NULL AS BIGINT) AS latest,
      CAST(t0 AS BIGINT) AS t0,
      CAST(t1 AS BIGINT) AS t1,
      CAST(t2 AS BIGINT) AS t2,
      CAST(t3 AS BIGINT) AS t3,
      y0 AS y0,
      y1 AS y1,
      y2 AS y2,
      y3 AS y3,
      CAST(NULL AS BIGINT) AS x2,
      CAST(NULL AS BIGINT) AS nx2
    FROM b_s0
    UNION ALL
    SELECT
      user_id,
      CAST(NULL AS STRING) AS arm,
      CAST(NULL AS BIGINT) AS latest,
      CAST(NULL AS BIGINT) AS t0,
      CAST(NULL AS BIGINT) AS t1,
      CAST(NULL AS BIGINT) AS t2,
      CAST(NULL AS BIGINT) AS t3,
      CAST(NULL AS BIGINT) AS y0,
      CAST(NULL AS BIGINT) AS y1,
      CAST(NULL AS BIGINT) AS y2,
      CAST(NULL AS BIGINT) AS y3,
      x2 AS x2,
      nx2 AS nx2
    FROM b_c0
  ) AS batch_rows
  GROUP BY
    user_id
)
INSERT INTO abrollout_rollup_users
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  '000000000003-golden' AS attempt,
  user_id AS user_id,
  arm AS arm,
  '' AS metric,
  0 AS y,
  0 AS x,
  0 AS nx,
  latest AS t
FROM batch
WHERE
  NOT latest IS NULL
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  '000000000003-golden' AS attempt,
  user_id AS user_id,
  '' AS arm,
  'annual_conversion' AS metric,
  COALESCE(y0, 0) AS y,
  0 AS x,
  0 AS nx,
  t0 AS t
FROM batch
WHERE
  NOT y0 IS NULL
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  '000000000003-golden' AS attempt,
  user_id AS user_id,
  '' AS arm,
  'refund_rate' AS metric,
  COALESCE(y1, 0) AS y,
  0 AS x,
  0 AS nx,
  t1 AS t
FROM batch
WHERE
  NOT y1 IS NULL
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  '000000000003-golden' AS attempt,
  user_id AS user_id,
  '' AS arm,
  'revenue_per_user' AS metric,
  COALESCE(y2, 0) AS y,
  COALESCE(x2, 0) AS x,
  COALESCE(nx2, 0) AS nx,
  t2 AS t
FROM batch
WHERE
  NOT y2 IS NULL OR nx2 > 0
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  '000000000003-golden' AS attempt,
  user_id AS user_id,
  '' AS arm,
  'orders' AS metric,
  COALESCE(y3, 0) AS y,
  0 AS x,
  0 AS nx,
  t3 AS t
FROM batch
WHERE
  NOT y3 IS NULL
ORDER BY
  3 NULLS LAST
