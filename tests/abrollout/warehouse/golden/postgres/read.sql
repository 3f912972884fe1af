SELECT
  arm,
  metric,
  SUM(n) AS n,
  SUM(pn) AS pn,
  CAST(SUM(s) AS TEXT) AS s,
  CAST(SUM(ss) AS TEXT) AS ss,
  CAST(SUM(ps) AS TEXT) AS ps,
  CAST(SUM(pss) AS TEXT) AS pss,
  CAST(SUM(psp) AS TEXT) AS psp,
  CAST(SUM(ds) AS TEXT) AS ds,
  CAST(SUM(dss) AS TEXT) AS dss,
  CAST(SUM(dsp) AS TEXT) AS dsp,
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
