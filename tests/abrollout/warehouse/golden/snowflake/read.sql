SELECT
  arm,
  metric,
  SUM(n) AS n,
  SUM(pn) AS pn,
  CAST(SUM(s) AS VARCHAR) AS s,
  CAST(SUM(ss) AS VARCHAR) AS ss,
  CAST(SUM(ps) AS VARCHAR) AS ps,
  CAST(SUM(pss) AS VARCHAR) AS pss,
  CAST(SUM(psp) AS VARCHAR) AS psp,
  CAST(SUM(ds) AS VARCHAR) AS ds,
  CAST(SUM(dss) AS VARCHAR) AS dss,
  CAST(SUM(dsp) AS VARCHAR) AS dsp,
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
