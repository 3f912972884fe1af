SELECT
  arm,
  metric,
  SUM(n) AS n,
  SUM(pn) AS pn,
  CAST(SUM(s) AS VARCHAR(MAX)) AS s,
  CAST(SUM(ss) AS VARCHAR(MAX)) AS ss,
  CAST(SUM(ps) AS VARCHAR(MAX)) AS ps,
  CAST(SUM(pss) AS VARCHAR(MAX)) AS pss,
  CAST(SUM(psp) AS VARCHAR(MAX)) AS psp,
  CAST(SUM(ds) AS VARCHAR(MAX)) AS ds,
  CAST(SUM(dss) AS VARCHAR(MAX)) AS dss,
  CAST(SUM(dsp) AS VARCHAR(MAX)) AS dsp,
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
