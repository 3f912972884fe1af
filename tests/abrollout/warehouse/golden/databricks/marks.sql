SELECT
  refresh_no,
  attempt,
  parent,
  source,
  loaded_hi
FROM abrollout_rollup_marks
WHERE
  rollup_key = 'pricing-annual-discount:39456b66c582'
