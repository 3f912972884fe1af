WITH staged AS (
  SELECT
    *
  FROM abrollout_rollup_users
  WHERE
    rollup_key = 'pricing-annual-discount:39456b66c582' AND attempt = '000000000003-golden'
), batch AS (
  SELECT
    user_id,
    MIN(NULLIF(arm, '')) AS arm,
    SUM(CASE WHEN metric = 'annual_conversion' THEN y END) AS y0,
    SUM(CASE WHEN metric = 'refund_rate' THEN y END) AS y1,
    SUM(CASE WHEN metric = 'revenue_per_user' THEN y END) AS y2,
    SUM(CASE WHEN metric = 'orders' THEN y END) AS y3,
    SUM(CASE WHEN metric = 'revenue_per_user' THEN x END) AS x2,
    SUM(CASE WHEN metric = 'revenue_per_user' THEN nx END) AS nx2
  FROM staged
  GROUP BY
    user_id
), old AS (
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
    AND attempt IN ('', '000000000002-golden', '000000000001-golden')
    AND user_id >= 'u00001'
    AND user_id <= 'u99999'
    AND user_id IN (
      SELECT
        user_id
      FROM staged
    )
  GROUP BY
    user_id
), moved AS (
  SELECT
    batch.user_id,
    old.arm AS old_arm,
    CASE
      WHEN old.arm IS NULL
      THEN batch.arm
      WHEN batch.arm IS NULL OR old.arm <= batch.arm
      THEN old.arm
      ELSE batch.arm
    END AS new_arm,
    COALESCE(old.y0, 0) AS oy0,
    COALESCE(old.y0, 0) + COALESCE(batch.y0, 0) AS ny0,
    COALESCE(old.y1, 0) AS oy1,
    COALESCE(old.y1, 0) + COALESCE(batch.y1, 0) AS ny1,
    COALESCE(old.y2, 0) AS oy2,
    COALESCE(old.y2, 0) + COALESCE(batch.y2, 0) AS ny2,
    COALESCE(old.y3, 0) AS oy3,
    COALESCE(old.y3, 0) + COALESCE(batch.y3, 0) AS ny3,
    COALESCE(old.x2, 0) AS ox2,
    COALESCE(old.x2, 0) + COALESCE(batch.x2, 0) AS nx2,
    COALESCE(old.nx2, 0) AS onx2,
    COALESCE(old.nx2, 0) + COALESCE(batch.nx2, 0) AS nnx2
  FROM batch
  LEFT JOIN old
    ON old.user_id = batch.user_id
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
INSERT INTO abrollout_rollup_sums
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  '000000000003-golden' AS attempt,
  '' AS arm,
  '' AS metric,
  0 AS n,
  0 AS pn,
  CAST(0 AS DECIMAL(38, 0)) AS s,
  CAST(0 AS DECIMAL(38, 0)) AS ss,
  CAST(0 AS DECIMAL(38, 0)) AS ps,
  CAST(0 AS DECIMAL(38, 0)) AS pss,
  CAST(0 AS DECIMAL(38, 0)) AS psp,
  CAST(0 AS DECIMAL(38, 0)) AS ds,
  CAST(0 AS DECIMAL(38, 0)) AS dss,
  CAST(0 AS DECIMAL(38, 0)) AS dsp,
  MAX(t) AS latest
FROM staged
WHERE
  metric = ''
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  '000000000003-golden' AS attempt,
  arm AS arm,
  '' AS metric,
  n AS n,
  0 AS pn,
  CAST(0 AS DECIMAL(38, 0)) AS s,
  CAST(0 AS DECIMAL(38, 0)) AS ss,
  CAST(0 AS DECIMAL(38, 0)) AS ps,
  CAST(0 AS DECIMAL(38, 0)) AS pss,
  CAST(0 AS DECIMAL(38, 0)) AS psp,
  CAST(0 AS DECIMAL(38, 0)) AS ds,
  CAST(0 AS DECIMAL(38, 0)) AS dss,
  CAST(0 AS DECIMAL(38, 0)) AS dsp,
  CAST(NULL AS BIGINT) AS latest
FROM deltas
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  '000000000003-golden' AS attempt,
  arm AS arm,
  'annual_conversion' AS metric,
  0 AS n,
  0 AS pn,
  CAST(sum_0 AS DECIMAL(38, 0)) AS s,
  CAST(sum_sq_0 AS DECIMAL(38, 0)) AS ss,
  CAST(0 AS DECIMAL(38, 0)) AS ps,
  CAST(0 AS DECIMAL(38, 0)) AS pss,
  CAST(0 AS DECIMAL(38, 0)) AS psp,
  CAST(0 AS DECIMAL(38, 0)) AS ds,
  CAST(0 AS DECIMAL(38, 0)) AS dss,
  CAST(0 AS DECIMAL(38, 0)) AS dsp,
  CAST(NULL AS BIGINT) AS latest
FROM deltas
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  '000000000003-golden' AS attempt,
  arm AS arm,
  'refund_rate' AS metric,
  0 AS n,
  0 AS pn,
  CAST(sum_1 AS DECIMAL(38, 0)) AS s,
  CAST(sum_sq_1 AS DECIMAL(38, 0)) AS ss,
  CAST(0 AS DECIMAL(38, 0)) AS ps,
  CAST(0 AS DECIMAL(38, 0)) AS pss,
  CAST(0 AS DECIMAL(38, 0)) AS psp,
  CAST(denom_sum_1 AS DECIMAL(38, 0)) AS ds,
  CAST(denom_sum_sq_1 AS DECIMAL(38, 0)) AS dss,
  CAST(denom_sum_product_1 AS DECIMAL(38, 0)) AS dsp,
  CAST(NULL AS BIGINT) AS latest
FROM deltas
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  '000000000003-golden' AS attempt,
  arm AS arm,
  'revenue_per_user' AS metric,
  0 AS n,
  pre_n_2 AS pn,
  CAST(sum_2 AS DECIMAL(38, 0)) AS s,
  CAST(sum_sq_2 AS DECIMAL(38, 0)) AS ss,
  CAST(pre_sum_2 AS DECIMAL(38, 0)) AS ps,
  CAST(pre_sum_sq_2 AS DECIMAL(38, 0)) AS pss,
  CAST(pre_sum_product_2 AS DECIMAL(38, 0)) AS psp,
  CAST(0 AS DECIMAL(38, 0)) AS ds,
  CAST(0 AS DECIMAL(38, 0)) AS dss,
  CAST(0 AS DECIMAL(38, 0)) AS dsp,
  CAST(NULL AS BIGINT) AS latest
FROM deltas
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  '000000000003-golden' AS attempt,
  arm AS arm,
  'orders' AS metric,
  0 AS n,
  0 AS pn,
  CAST(sum_3 AS DECIMAL(38, 0)) AS s,
  CAST(sum_sq_3 AS DECIMAL(38, 0)) AS ss,
  CAST(0 AS DECIMAL(38, 0)) AS ps,
  CAST(0 AS DECIMAL(38, 0)) AS pss,
  CAST(0 AS DECIMAL(38, 0)) AS psp,
  CAST(0 AS DECIMAL(38, 0)) AS ds,
  CAST(0 AS DECIMAL(38, 0)) AS dss,
  CAST(0 AS DECIMAL(38, 0)) AS dsp,
  CAST(NULL AS BIGINT) AS latest
FROM deltas
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  '000000000003-golden' AS attempt,
  '' AS arm,
  'annual_conversion' AS metric,
  0 AS n,
  COALESCE(SUM(nx), 0) AS pn,
  CAST(0 AS DECIMAL(38, 0)) AS s,
  CAST(0 AS DECIMAL(38, 0)) AS ss,
  CAST(0 AS DECIMAL(38, 0)) AS ps,
  CAST(0 AS DECIMAL(38, 0)) AS pss,
  CAST(0 AS DECIMAL(38, 0)) AS psp,
  CAST(0 AS DECIMAL(38, 0)) AS ds,
  CAST(0 AS DECIMAL(38, 0)) AS dss,
  CAST(0 AS DECIMAL(38, 0)) AS dsp,
  MAX(t) AS latest
FROM staged
WHERE
  metric = 'annual_conversion'
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  '000000000003-golden' AS attempt,
  '' AS arm,
  'refund_rate' AS metric,
  0 AS n,
  COALESCE(SUM(nx), 0) AS pn,
  CAST(0 AS DECIMAL(38, 0)) AS s,
  CAST(0 AS DECIMAL(38, 0)) AS ss,
  CAST(0 AS DECIMAL(38, 0)) AS ps,
  CAST(0 AS DECIMAL(38, 0)) AS pss,
  CAST(0 AS DECIMAL(38, 0)) AS psp,
  CAST(0 AS DECIMAL(38, 0)) AS ds,
  CAST(0 AS DECIMAL(38, 0)) AS dss,
  CAST(0 AS DECIMAL(38, 0)) AS dsp,
  MAX(t) AS latest
FROM staged
WHERE
  metric = 'refund_rate'
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  '000000000003-golden' AS attempt,
  '' AS arm,
  'revenue_per_user' AS metric,
  0 AS n,
  COALESCE(SUM(nx), 0) AS pn,
  CAST(0 AS DECIMAL(38, 0)) AS s,
  CAST(0 AS DECIMAL(38, 0)) AS ss,
  CAST(0 AS DECIMAL(38, 0)) AS ps,
  CAST(0 AS DECIMAL(38, 0)) AS pss,
  CAST(0 AS DECIMAL(38, 0)) AS psp,
  CAST(0 AS DECIMAL(38, 0)) AS ds,
  CAST(0 AS DECIMAL(38, 0)) AS dss,
  CAST(0 AS DECIMAL(38, 0)) AS dsp,
  MAX(t) AS latest
FROM staged
WHERE
  metric = 'revenue_per_user'
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  '000000000003-golden' AS attempt,
  '' AS arm,
  'orders' AS metric,
  0 AS n,
  COALESCE(SUM(nx), 0) AS pn,
  CAST(0 AS DECIMAL(38, 0)) AS s,
  CAST(0 AS DECIMAL(38, 0)) AS ss,
  CAST(0 AS DECIMAL(38, 0)) AS ps,
  CAST(0 AS DECIMAL(38, 0)) AS pss,
  CAST(0 AS DECIMAL(38, 0)) AS psp,
  CAST(0 AS DECIMAL(38, 0)) AS ds,
  CAST(0 AS DECIMAL(38, 0)) AS dss,
  CAST(0 AS DECIMAL(38, 0)) AS dsp,
  MAX(t) AS latest
FROM staged
WHERE
  metric = 'orders'
