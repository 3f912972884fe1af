SELECT
  arm,
  metric,
  SUM(n) AS n,
  SUM(pn) AS pn,
  CAST(SUM(s) AS Nullable(String)) AS s,
  CAST(SUM(ss) AS Nullable(String)) AS ss,
  CAST(SUM(ps) AS Nullable(String)) AS ps,
  CAST(SUM(pss) AS Nullable(String)) AS pss,
  CAST(SUM(psp) AS Nullable(String)) AS psp,
  CAST(SUM(ds) AS Nullable(String)) AS ds,
  CAST(SUM(dss) AS Nullable(String)) AS dss,
  CAST(SUM(dsp) AS Nullable(String)) AS dsp,
  MAX(latest) AS latest
FROM abrollout_rollup_sums
WHERE
  rollup_key = 'pricing-annual-discount:39456b66c582' AND attempt IN ('', '000000000002-golden', '000000000001-golden')
GROUP BY
  arm,
  metric
ORDER BY
  arm,
  metric
