SELECT
  arm,
  metric,
  SUM(n) AS n,
  SUM(pn) AS pn,
  CAST(SUM(s) AS STRING) AS s,
  CAST(SUM(ss) AS STRING) AS ss,
  CAST(SUM(ps) AS STRING) AS ps,
  CAST(SUM(pss) AS STRING) AS pss,
  CAST(SUM(psp) AS STRING) AS psp,
  CAST(SUM(ds) AS STRING) AS ds,
  CAST(SUM(dss) AS STRING) AS dss,
  CAST(SUM(dsp) AS STRING) AS dsp,
  MAX(latest) AS latest
FROM abrollout_rollup_sums
WHERE
  rollup_key = 'pricing-annual-discount:39456b66c582' AND attempt IN ('', '000000000002-golden', '000000000001-golden')
GROUP BY
  arm,
  metric
ORDER BY
  arm NULLS LAST,
  metric NULLS LAST
