INSERT INTO abrollout_rollup_sums
WITH b_e AS (
  SELECT
    CAST(user_id AS VARCHAR(MAX)) AS user_id,
    MIN(CAST(arm AS VARCHAR(MAX))) AS arm,
    MAX(at_s) AS latest
  FROM "exposures"
  WHERE
    exp_key = 'pricing-annual-discount' AND loaded_at > 10 AND loaded_at <= 20
  GROUP BY
    CAST(user_id AS VARCHAR(MAX))
), b_s0 AS (
  SELECT
    CAST(user_id AS VARCHAR(MAX)) AS user_id,
    SUM(
      CASE
        WHEN (
          metric = 'annual_conversion'
        )
        THEN CAST(FLOOR(CAST(value AS DOUBLE PRECISION) * 1000000 + 0.5) AS BIGINT)
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
        THEN CAST(FLOOR(CAST(value AS DOUBLE PRECISION) * 1000000 + 0.5) AS BIGINT)
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
        THEN CAST(FLOOR(CAST(value AS DOUBLE PRECISION) * 1000000 + 0.5) AS BIGINT)
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
        THEN CAST(FLOOR(CAST(value AS DOUBLE PRECISION) * 1000000 + 0.5) AS BIGINT)
      END
    ) AS y3,
    MAX(CASE WHEN (
      metric = 'orders'
    ) THEN at_s END) AS t3
  FROM "metric_events"
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
    CAST(user_id AS VARCHAR(MAX))
), b_c0 AS (
  SELECT
    CAST(user_id AS VARCHAR(MAX)) AS user_id,
    SUM(
      CASE
        WHEN (
          metric = 'revenue_per_user'
        )
        THEN CAST(FLOOR(CAST(value AS DOUBLE PRECISION) * 1000000 + 0.5) AS BIGINT)
      END
    ) AS x2,
    COUNT(CASE WHEN (
      metric = 'revenue_per_user'
    ) THEN 1 END) AS nx2
  FROM "pre_period"
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
    CAST(user_id AS VARCHAR(MAX))
), batch AS (
  SELECT
    user_id,
    MIN(arm) AS arm,
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
      CAST(NULL AS VARCHAR(MAX)) AS arm,
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
      CAST(NULL AS VARCHAR(MAX)) AS arm,
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
), "old" AS (
  SELECT
    user_id,
    MIN(NULLIF(arm, '')) AS arm,
    SUM(CASE WHEN metric = 'annual_conversion' THEN y END) AS y0,
    SUM(CASE WHEN metric = 'refund_rate' THEN y END) AS y1,
    SUM(CASE WHEN metric = 'revenue_per_user' THEN y END) AS y2,
    SUM(CASE WHEN metric = 'orders' THEN y END) AS y3,
    SUM(CASE WHEN metric = 'revenue_per_user' THEN x END) AS x2,
    SUM(CASE WHEN metric = 'revenue_per_user' THEN nx END) AS nx2
  FROM abrollout_rollup_users
  WHERE
    rollup_key = 'pricing-annual-discount:39456b66c582'
    AND attempt IN (
      SELECT
        MIN(attempt)
      FROM abrollout_rollup_marks
      WHERE
        rollup_key = 'pricing-annual-discount:39456b66c582'
      GROUP BY
        refresh_no
    )
    AND user_id IN (
      SELECT
        user_id
      FROM batch
    )
  GROUP BY
    user_id
), moved AS (
  SELECT
    batch.user_id,
    "old".arm AS old_arm,
    CASE
      WHEN "old".arm IS NULL
      THEN batch.arm
      WHEN batch.arm IS NULL OR "old".arm <= batch.arm
      THEN "old".arm
      ELSE batch.arm
    END AS new_arm,
    COALESCE("old".y0, 0) AS oy0,
    COALESCE("old".y0, 0) + COALESCE(batch.y0, 0) AS ny0,
    COALESCE("old".y1, 0) AS oy1,
    COALESCE("old".y1, 0) + COALESCE(batch.y1, 0) AS ny1,
    COALESCE("old".y2, 0) AS oy2,
    COALESCE("old".y2, 0) + COALESCE(batch.y2, 0) AS ny2,
    COALESCE("old".y3, 0) AS oy3,
    COALESCE("old".y3, 0) + COALESCE(batch.y3, 0) AS ny3,
    COALESCE("old".x2, 0) AS ox2,
    COALESCE("old".x2, 0) + COALESCE(batch.x2, 0) AS nx2,
    COALESCE("old".nx2, 0) AS onx2,
    COALESCE("old".nx2, 0) + COALESCE(batch.nx2, 0) AS nnx2
  FROM batch
  LEFT JOIN "old"
    ON "old".user_id = batch.user_id
), terms AS (
  SELECT
    new_arm AS arm,
    1 AS sign,
    CASE WHEN ny0 > 0 THEN 1000000 ELSE 0 END AS v0,
    COALESCE(ny1, 0) AS v1,
    COALESCE(ny2, 0) AS v2,
    CASE WHEN nnx2 > 0 THEN nx2 END AS x2,
    COALESCE(ny3, 0) AS v3
  FROM moved
  WHERE
    NOT new_arm IS NULL
  UNION ALL
  SELECT
    old_arm AS arm,
    -1 AS sign,
    CASE WHEN oy0 > 0 THEN 1000000 ELSE 0 END AS v0,
    COALESCE(oy1, 0) AS v1,
    COALESCE(oy2, 0) AS v2,
    CASE WHEN onx2 > 0 THEN ox2 END AS x2,
    COALESCE(oy3, 0) AS v3
  FROM moved
  WHERE
    NOT old_arm IS NULL
), deltas AS (
  SELECT
    arm,
    SUM(sign) AS n,
    COALESCE(SUM(sign * CAST(v0 AS DECIMAL(38, 0))), 0) AS sum_0,
    COALESCE(SUM(sign * CAST(v0 AS DECIMAL(38, 0)) * CAST(v0 AS DECIMAL(38, 0))), 0) AS sum_sq_0,
    COALESCE(SUM(sign * CAST(v1 AS DECIMAL(38, 0))), 0) AS sum_1,
    COALESCE(SUM(sign * CAST(v1 AS DECIMAL(38, 0)) * CAST(v1 AS DECIMAL(38, 0))), 0) AS sum_sq_1,
    COALESCE(SUM(sign * CAST(v3 AS DECIMAL(38, 0))), 0) AS denom_sum_1,
    COALESCE(SUM(sign * CAST(v3 AS DECIMAL(38, 0)) * CAST(v3 AS DECIMAL(38, 0))), 0) AS denom_sum_sq_1,
    COALESCE(SUM(sign * CAST(v1 AS DECIMAL(38, 0)) * CAST(v3 AS DECIMAL(38, 0))), 0) AS denom_sum_product_1,
    COALESCE(SUM(sign * CAST(v2 AS DECIMAL(38, 0))), 0) AS sum_2,
    COALESCE(SUM(sign * CAST(v2 AS DECIMAL(38, 0)) * CAST(v2 AS DECIMAL(38, 0))), 0) AS sum_sq_2,
    COALESCE(SUM(sign * CAST(x2 AS DECIMAL(38, 0))), 0) AS pre_sum_2,
    COALESCE(SUM(sign * CAST(x2 AS DECIMAL(38, 0)) * CAST(x2 AS DECIMAL(38, 0))), 0) AS pre_sum_sq_2,
    COALESCE(SUM(sign * CAST(x2 AS DECIMAL(38, 0)) * CAST(v2 AS DECIMAL(38, 0))), 0) AS pre_sum_product_2,
    SUM(CASE WHEN x2 IS NULL THEN 0 ELSE sign END) AS pre_n_2,
    COALESCE(SUM(sign * CAST(v3 AS DECIMAL(38, 0))), 0) AS sum_3,
    COALESCE(SUM(sign * CAST(v3 AS DECIMAL(38, 0)) * CAST(v3 AS DECIMAL(38, 0))), 0) AS sum_sq_3
  FROM terms
  GROUP BY
    arm
)
SELECT
  'pricing-annual-discount:39456b66c582',
  'golden-attempt',
  arm,
  '',
  n,
  0,
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(NULL AS BIGINT)
FROM deltas
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582',
  'golden-attempt',
  arm,
  'annual_conversion',
  0,
  0,
  CAST(sum_0 AS DECIMAL(38, 0)),
  CAST(sum_sq_0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(NULL AS BIGINT)
FROM deltas
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582',
  'golden-attempt',
  arm,
  'refund_rate',
  0,
  0,
  CAST(sum_1 AS DECIMAL(38, 0)),
  CAST(sum_sq_1 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(denom_sum_1 AS DECIMAL(38, 0)),
  CAST(denom_sum_sq_1 AS DECIMAL(38, 0)),
  CAST(denom_sum_product_1 AS DECIMAL(38, 0)),
  CAST(NULL AS BIGINT)
FROM deltas
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582',
  'golden-attempt',
  arm,
  'revenue_per_user',
  0,
  pre_n_2,
  CAST(sum_2 AS DECIMAL(38, 0)),
  CAST(sum_sq_2 AS DECIMAL(38, 0)),
  CAST(pre_sum_2 AS DECIMAL(38, 0)),
  CAST(pre_sum_sq_2 AS DECIMAL(38, 0)),
  CAST(pre_sum_product_2 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(NULL AS BIGINT)
FROM deltas
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582',
  'golden-attempt',
  arm,
  'orders',
  0,
  0,
  CAST(sum_3 AS DECIMAL(38, 0)),
  CAST(sum_sq_3 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(NULL AS BIGINT)
FROM deltas
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582',
  'golden-attempt',
  '',
  '',
  0,
  0,
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  MAX(latest)
FROM b_e
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582',
  'golden-attempt',
  '',
  'annual_conversion',
  0,
  0,
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  MAX(t0)
FROM b_s0
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582',
  'golden-attempt',
  '',
  'refund_rate',
  0,
  0,
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  MAX(t1)
FROM b_s0
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582',
  'golden-attempt',
  '',
  'revenue_per_user',
  0,
  0,
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  MAX(t2)
FROM b_s0
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582',
  'golden-attempt',
  '',
  'orders',
  0,
  0,
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  MAX(t3)
FROM b_s0
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582',
  'golden-attempt',
  '',
  'revenue_per_user',
  0,
  COALESCE(SUM(nx2), 0),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(0 AS DECIMAL(38, 0)),
  CAST(NULL AS BIGINT)
FROM b_c0
