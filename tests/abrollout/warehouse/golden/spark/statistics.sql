/* per-arm sufficient statistics of a window, values in units of 1/1000000; the arm-NULL row is users with rows but no exposure in the window: it counts only for the latest times and covariate rows */
WITH exposed AS (
  SELECT
    CAST(user_id AS STRING) AS user_id,
    MIN(CAST(arm AS STRING)) AS arm,
    MAX(at_s) AS latest
  FROM `exposures`
  WHERE
    exp_key = 'pricing-annual-discount' AND at_s <= 2419200
  GROUP BY
    CAST(user_id AS STRING)
), s0 AS (
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
    AND at_s <= 2419200
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
), c0 AS (
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
    exp_key = 'pricing-annual-discount' AND (
      (
        metric = 'revenue_per_user'
      )
    )
  GROUP BY
    CAST(user_id AS STRING)
), per_user AS (
  SELECT
    exposed.arm,
    exposed.latest AS latest_e,
    s0.t0 AS latest_0,
    s0.t1 AS latest_1,
    s0.t2 AS latest_2,
    s0.t3 AS latest_3,
    c0.nx2 AS covariates_2,
    CASE WHEN s0.y0 > 0 THEN 1000000 ELSE 0 END AS v0,
    COALESCE(s0.y1, 0) AS v1,
    COALESCE(s0.y2, 0) AS v2,
    CASE WHEN c0.nx2 > 0 THEN c0.x2 END AS x2,
    COALESCE(s0.y3, 0) AS v3
  FROM exposed
  FULL JOIN s0
    ON s0.user_id = exposed.user_id
  FULL JOIN c0
    ON c0.user_id = COALESCE(exposed.user_id, s0.user_id)
)
SELECT
  arm,
  COUNT(*) AS n,
  MAX(latest_e) AS latest_e,
  MAX(latest_0) AS latest_0,
  MAX(latest_1) AS latest_1,
  MAX(latest_2) AS latest_2,
  MAX(latest_3) AS latest_3,
  SUM(covariates_2) AS covariates_2,
  CAST(SUM(CAST(v0 AS DECIMAL(38, 0))) AS STRING) AS sum_0,
  CAST(SUM(CAST(v0 AS DECIMAL(38, 0)) * CAST(v0 AS DECIMAL(38, 0))) AS STRING) AS sum_sq_0,
  CAST(SUM(CAST(v1 AS DECIMAL(38, 0))) AS STRING) AS sum_1,
  CAST(SUM(CAST(v1 AS DECIMAL(38, 0)) * CAST(v1 AS DECIMAL(38, 0))) AS STRING) AS sum_sq_1,
  CAST(SUM(CAST(v3 AS DECIMAL(38, 0))) AS STRING) AS denom_sum_1,
  CAST(SUM(CAST(v3 AS DECIMAL(38, 0)) * CAST(v3 AS DECIMAL(38, 0))) AS STRING) AS denom_sum_sq_1,
  CAST(SUM(CAST(v1 AS DECIMAL(38, 0)) * CAST(v3 AS DECIMAL(38, 0))) AS STRING) AS denom_sum_product_1,
  CAST(SUM(CAST(v2 AS DECIMAL(38, 0))) AS STRING) AS sum_2,
  CAST(SUM(CAST(v2 AS DECIMAL(38, 0)) * CAST(v2 AS DECIMAL(38, 0))) AS STRING) AS sum_sq_2,
  CAST(SUM(CAST(x2 AS DECIMAL(38, 0))) AS STRING) AS pre_sum_2,
  CAST(SUM(CAST(x2 AS DECIMAL(38, 0)) * CAST(x2 AS DECIMAL(38, 0))) AS STRING) AS pre_sum_sq_2,
  CAST(SUM(CAST(x2 AS DECIMAL(38, 0)) * CAST(v2 AS DECIMAL(38, 0))) AS STRING) AS pre_sum_product_2,
  CAST(COUNT(x2) AS BIGINT) AS pre_n_2,
  CAST(SUM(CAST(v3 AS DECIMAL(38, 0))) AS STRING) AS sum_3,
  CAST(SUM(CAST(v3 AS DECIMAL(38, 0)) * CAST(v3 AS DECIMAL(38, 0))) AS STRING) AS sum_sq_3
FROM per_user
GROUP BY
  arm
ORDER BY
  arm NULLS LAST
