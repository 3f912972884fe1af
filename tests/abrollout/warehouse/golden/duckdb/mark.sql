INSERT INTO abrollout_rollup_marks
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  3 AS refresh_no,
  '000000000003-golden' AS attempt,
  '000000000002-golden' AS parent,
  'e' AS source,
  20 AS loaded_hi
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  3 AS refresh_no,
  '000000000003-golden' AS attempt,
  '000000000002-golden' AS parent,
  's0' AS source,
  20 AS loaded_hi
UNION ALL
SELECT
  'pricing-annual-discount:39456b66c582' AS rollup_key,
  3 AS refresh_no,
  '000000000003-golden' AS attempt,
  '000000000002-golden' AS parent,
  'c0' AS source,
  20 AS loaded_hi
