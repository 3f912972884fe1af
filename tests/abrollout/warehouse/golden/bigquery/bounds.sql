SELECT
  MIN(user_id) AS lo,
  MAX(user_id) AS hi
FROM abrollout_rollup_users
WHERE
  rollup_key = 'pricing-annual-discount:39456b66c582' AND attempt = '000000000003-golden'
